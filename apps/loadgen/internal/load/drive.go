package load

import (
	"context"
	"sync"
	"time"
)

// Op does one request and says how many items (events) it carried.
type Op func(ctx context.Context, worker int) (items int, err error)

// Result is what a driver measured.
type Result struct {
	// Window is the measured interval.
	Window time.Duration
	// Ops and Items completed inside the window; Errors failed inside it.
	Ops, Items, Errors int
	FirstErr           error
	// Latency of the ops that completed inside the window.
	Latency Summary
	// MaxLag is how late the latest paced start was (Paced only).
	MaxLag time.Duration
}

// Rate is items per second.
func (r Result) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Items) / r.Window.Seconds()
}

// Closed runs op in a loop on workers goroutines for warm+window and counts
// the ops that complete inside the window (after warm). Each goroutine sends
// its next request when the previous one answered: the classic closed loop
// with a fixed number of concurrent clients.
func Closed(ctx context.Context, workers int, warm, window time.Duration, op Op) Result {
	from := time.Now().Add(warm)
	to := from.Add(window)
	type part struct {
		lat          []time.Duration
		ops, items   int
		errs         int
		firstErr     error
		firstErrTime time.Time
	}
	parts := make([]part, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := &parts[w]
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(to) {
					return
				}
				n, err := op(ctx, w)
				end := time.Now()
				if end.Before(from) || end.After(to) {
					continue
				}
				if err != nil {
					p.errs++
					if p.firstErr == nil {
						p.firstErr, p.firstErrTime = err, end
					}
					continue
				}
				p.ops++
				p.items += n
				p.lat = append(p.lat, end.Sub(t))
			}
		})
	}
	wg.Wait()
	res := Result{Window: window}
	var lat []time.Duration
	var firstAt time.Time
	for _, p := range parts {
		res.Ops += p.ops
		res.Items += p.items
		res.Errors += p.errs
		if p.firstErr != nil && (res.FirstErr == nil || p.firstErrTime.Before(firstAt)) {
			res.FirstErr, firstAt = p.firstErr, p.firstErrTime
		}
		lat = append(lat, p.lat...)
	}
	res.Latency = Summarize(lat)
	return res
}

// Paced starts op rate times per second for d (an open loop: the schedule
// does not wait for answers) on up to conc goroutines. Latency runs from the
// scheduled start, so a stalled server is not hidden by late sends; MaxLag
// says how late the worst start was because every goroutine was busy.
func Paced(ctx context.Context, rate float64, d time.Duration, conc int, op Op) Result {
	n := int(rate * d.Seconds())
	type ticket struct {
		at time.Time
	}
	tickets := make(chan ticket, conc)
	type part struct {
		lat        []time.Duration
		ops, items int
		errs       int
		firstErr   error
		maxLag     time.Duration
	}
	parts := make([]part, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			p := &parts[w]
			for t := range tickets {
				if lag := time.Since(t.at); lag > p.maxLag {
					p.maxLag = lag
				}
				items, err := op(ctx, w)
				if err != nil {
					p.errs++
					if p.firstErr == nil {
						p.firstErr = err
					}
					continue
				}
				p.ops++
				p.items += items
				p.lat = append(p.lat, time.Since(t.at))
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		tickets <- ticket{at: at}
	}
	close(tickets)
	wg.Wait()
	res := Result{Window: d}
	var lat []time.Duration
	for _, p := range parts {
		res.Ops += p.ops
		res.Items += p.items
		res.Errors += p.errs
		if res.FirstErr == nil {
			res.FirstErr = p.firstErr
		}
		res.MaxLag = max(res.MaxLag, p.maxLag)
		lat = append(lat, p.lat...)
	}
	res.Latency = Summarize(lat)
	return res
}
