// Package service gives long-running components (relay, worker, HTTP server) one
// Start/Stop contract, after River's baseservice: Start launches one goroutine and
// returns; Stop is idempotent, safe without Start, and waits.
package service

import (
	"context"
	"sync"
)

// RunFunc is a service body. It must return once ctx is cancelled (a hard stop) and
// should return soon after stopping is closed (a soft stop: finish the work in
// hand, take no more).
type RunFunc func(ctx context.Context, stopping <-chan struct{})

// Base is embedded by services. The zero value is ready.
type Base struct {
	mu       sync.Mutex
	running  bool
	stopping chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
}

// StartRun launches run in a goroutine unless it already runs; a second call while
// running is a no-op, so Start is idempotent.
func (b *Base) StartRun(ctx context.Context, run RunFunc) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.running = true
	b.cancel = cancel
	b.stopping = make(chan struct{})
	b.done = make(chan struct{})
	go func(stopping <-chan struct{}, done chan struct{}) {
		defer close(done)
		defer cancel()
		run(ctx, stopping)
	}(b.stopping, b.done)
}

// Stop asks for a soft stop and waits for it until ctx is done, then cancels hard
// and waits for the goroutine to return. Safe to call without Start and twice.
func (b *Base) Stop(ctx context.Context) {
	b.mu.Lock()
	if !b.running {
		b.mu.Unlock()
		return
	}
	b.running = false
	stopping, cancel, done := b.stopping, b.cancel, b.done
	b.mu.Unlock()

	close(stopping)
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
	}
}

// Kill cancels at once and waits: a hard stop, as close to a crash as a process
// can do to itself. Tests use it to stop a service mid-stream.
func (b *Base) Kill() {
	b.mu.Lock()
	if !b.running {
		b.mu.Unlock()
		return
	}
	b.running = false
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	cancel()
	<-done
}

// Running reports whether the service goroutine was started and not yet stopped.
func (b *Base) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running
}
