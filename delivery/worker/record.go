package worker

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// recordBatch caps the outcomes written in one transaction.
const recordBatch = 256

// recorders is how many transactions of outcomes may be written at once: a
// lane waits for its outcome's commit, so one writer would make every lane wait
// for the batch in progress and then its own.
const recorders = 4

// recordReq is one outcome waiting to be written, and where its answer goes.
type recordReq struct {
	o    outcome
	done chan recordRes
}

type recordRes struct {
	failingSince *time.Time
	err          error
}

// record writes the attempt and the delivery's new state together, and
// returns when the subscription's current run of failures started (nil after a
// success). It waits until the write committed: the lane's next delivery (an
// ordered subscription's next one of the key above all) must see it. An
// unrecorded success would be sent again, so callers keep failures and retry.
//
// Writes are group-committed: while one transaction of outcomes is being
// written, the outcomes that arrive meanwhile gather for the next, so the
// worker pays one commit (and one round trip) per batch instead of per
// attempt (docs/benchmarks.md, scenarios 4 and 6).
func (d *dispatcher) record(o outcome) (*time.Time, error) {
	req := recordReq{o: o, done: make(chan recordRes, 1)}
	select {
	case d.records <- req:
	case <-d.ctx.Done():
		return nil, d.ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.failingSince, r.err
	case <-d.ctx.Done():
		return nil, d.ctx.Err()
	}
}

// runRecorders runs the recorders until stopRecorder is closed (after the
// lanes and the last retries ended) or the worker is stopped hard.
func (d *dispatcher) runRecorders() {
	defer close(d.recorderDone)
	var wg sync.WaitGroup
	for range recorders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.runRecorder()
		}()
	}
	wg.Wait()
}

// runRecorder writes batches of outcomes. Batches of concurrent recorders lock
// subscriptions in the same (sorted) order, so they cannot deadlock.
func (d *dispatcher) runRecorder() {
	for {
		var first recordReq
		select {
		case first = <-d.records:
		case <-d.stopRecorder:
			return
		case <-d.ctx.Done():
			return
		}
		batch := []recordReq{first}
	fill:
		for len(batch) < recordBatch {
			select {
			case r := <-d.records:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		d.writeOutcomes(batch)
	}
}

// writeOutcomes writes a batch in one implicit transaction: all or none. Rows
// are locked in (subscription, delivery) order, so two workers' batches cannot
// deadlock on a subscription's failure bookkeeping.
func (d *dispatcher) writeOutcomes(batch []recordReq) {
	slices.SortFunc(batch, func(a, b recordReq) int {
		if c := cmp.Compare(a.o.j.subscriptionID.String(), b.o.j.subscriptionID.String()); c != 0 {
			return c
		}
		return cmp.Compare(a.o.j.deliveryID.String(), b.o.j.deliveryID.String())
	})
	b := &pgx.Batch{}
	for _, r := range batch {
		o := r.o
		b.Queue(q.FinishAttempt, o.j.deliveryID, o.status, o.n, o.next, o.lastErr, d.id,
			o.started, o.latency.Microseconds(), o.code, o.body, o.ok, o.j.subscriptionID)
	}
	res := make([]recordRes, len(batch))
	err := func() error {
		br := d.w.pool.SendBatch(d.ctx, b)
		defer br.Close()
		for i, r := range batch {
			var updated int64
			if err := br.QueryRow().Scan(&updated, &res[i].failingSince); err != nil {
				return err
			}
			if updated == 0 {
				d.log.Warn("delivery was taken over by another worker before its attempt was recorded", "delivery_id", r.o.j.deliveryID)
			}
		}
		return br.Close()
	}()
	for i, r := range batch {
		if err != nil {
			res[i] = recordRes{err: err} // rolled back: none of them is written
		}
		r.done <- res[i]
	}
}
