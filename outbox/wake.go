package outbox

import (
	"context"
	"sync"
	"time"
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
// Rounds start at least notifyGap apart. A NOTIFY still takes the lock that
// commits take, so back-to-back NOTIFYs cost 9-16 % of the commit rate at 64
// writers (docs/benchmarks.md, scenario 5); a relay woken more often than every
// few milliseconds gains nothing, as each wake-up drains all it finds.
//
// A failed or skipped wake-up (the caller's context ended, PostgreSQL went
// away) loses nothing: the relay polls every ECS_RELAY_POLL_INTERVAL anyway.
type waker struct {
	notify func(ctx context.Context) error
	gap    time.Duration // least time between the starts of two NOTIFYs
	last   time.Time     // when the last NOTIFY started

	mu      sync.Mutex
	seq     uint64        // commits that asked for a wake-up
	covered uint64        // commits a finished NOTIFY started after
	running bool          // a NOTIFY is in flight
	changed chan struct{} // closed when a NOTIFY finishes
}

// notifyGap is the least time between two wake-ups: at most 500 NOTIFY/s.
const notifyGap = 2 * time.Millisecond

func newWaker(notify func(ctx context.Context) error) *waker {
	return &waker{notify: notify, gap: notifyGap, changed: make(chan struct{})}
}

// wake returns once a NOTIFY that started after this call began has finished,
// sending it itself unless another caller's does.
func (w *waker) wake(ctx context.Context) error {
	w.mu.Lock()
	w.seq++
	mine := w.seq
	for w.covered < mine {
		if !w.running {
			// Lead a round. It starts no sooner than gap after the last one,
			// and covers every commit that asked until it starts.
			w.running = true
			wait := time.Until(w.last.Add(w.gap))
			w.mu.Unlock()
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			w.mu.Lock()
			upTo := w.seq
			w.last = time.Now()
			w.mu.Unlock()
			err := ctx.Err()
			if err == nil {
				err = w.notify(ctx)
			}
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
