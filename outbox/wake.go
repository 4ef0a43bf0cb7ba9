package outbox

import (
	"context"
	"sync"
)

// waker wakes the relay (NOTIFY ecs_outbox) after events commit, one NOTIFY
// for many commits.
//
// A NOTIFY inside the event's own transaction would be simpler, but
// PostgreSQL queues notifications under a database-wide lock that is held
// from just before the commit record until the transaction ends, WAL flush
// included: notifying transactions cannot share a flush and commit one at a
// time. At 64 concurrent writers that cut the event transaction from about
// 7,000 to 1,300 commits/s on a 2-core machine (docs/benchmarks.md, scenario
// 5). So the transaction does not notify; afterwards the publisher calls
// wake, which returns once a NOTIFY that started after the caller's commit
// has finished. While one NOTIFY runs, every caller that committed meanwhile
// waits for the next one, which one of them sends for all: a group commit for
// wake-ups. The NOTIFY runs in a transaction of its own that writes no WAL,
// so it holds the lock only briefly.
//
// A failed or skipped wake-up (the caller's context ended, PostgreSQL went
// away) loses nothing: the relay polls every ECS_RELAY_POLL_INTERVAL anyway.
type waker struct {
	notify func(ctx context.Context) error

	mu      sync.Mutex
	seq     uint64        // commits that asked for a wake-up
	covered uint64        // commits a finished NOTIFY started after
	running bool          // a NOTIFY is in flight
	changed chan struct{} // closed when a NOTIFY finishes
}

func newWaker(notify func(ctx context.Context) error) *waker {
	return &waker{notify: notify, changed: make(chan struct{})}
}

// wake returns once a NOTIFY that started after this call began has finished,
// sending it itself unless another caller's does.
func (w *waker) wake(ctx context.Context) error {
	w.mu.Lock()
	w.seq++
	mine := w.seq
	for w.covered < mine {
		if !w.running {
			// Lead a round: it covers every commit that asked so far.
			w.running = true
			upTo := w.seq
			w.mu.Unlock()
			err := w.notify(ctx)
			w.mu.Lock()
			w.running = false
			if err == nil {
				w.covered = max(w.covered, upTo)
			}
			close(w.changed)
			w.changed = make(chan struct{})
			if err != nil {
				w.mu.Unlock()
				return err
			}
			continue
		}
		// A NOTIFY is in flight, perhaps begun before our commit: wait for
		// it, then see whether a later one is needed.
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return nil
}
