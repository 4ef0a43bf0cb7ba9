package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/eventconfigservice/ecs/delivery/sender"
)

// subLimits bounds one subscription's attempts on this worker: how many are in
// flight at once and how many start per second. A subscription's limits hold
// for the whole deployment: each of the live workers takes an even share (the
// rate exactly; concurrency rounded down, at least one each).
type subLimits struct {
	concurrency int
	rate        float64
	sem         chan struct{}
	lim         *rate.Limiter // nil: no rate limit
}

// limitsFor returns the limits j's subscription has now on this worker. When
// its settings or the number of workers change it gets new ones; attempts under
// the old ones finish under them.
func (d *dispatcher) limitsFor(j job) *subLimits {
	peers := int(max(d.w.peers.Load(), 1))
	n := d.w.cfg.Lanes
	if j.concurrency > 0 {
		n = min(n, max(j.concurrency/peers, 1))
	}
	var r float64
	if j.rateLimit > 0 {
		r = float64(j.rateLimit) / float64(peers)
	}
	d.limMu.Lock()
	defer d.limMu.Unlock()
	l := d.limits[j.subscriptionID]
	if l == nil || l.concurrency != n || l.rate != r {
		l = &subLimits{concurrency: n, rate: r, sem: make(chan struct{}, n)}
		if r > 0 {
			// A burst of one spaces requests evenly: a subscriber that asked for
			// 10/s never sees 10 at once.
			l.lim = rate.NewLimiter(rate.Limit(r), 1)
		}
		d.limits[j.subscriptionID] = l
	}
	return l
}

// acquire takes a slot; false means ctx ended first.
func (l *subLimits) acquire(ctx context.Context) bool {
	select {
	case l.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (l *subLimits) release() { <-l.sem }

// wait blocks until the rate limit lets a request start.
func (l *subLimits) wait(ctx context.Context) error {
	if l.lim == nil {
		return nil
	}
	return l.lim.Wait(ctx)
}

// errStopped reports an attempt cut short by a hard stop; breakers ignore it.
var errStopped = errors.New("worker stopped")

// breaker is one endpoint's circuit breaker (gobreaker): per URL, per worker.
type breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	cooldown time.Duration
	openedAt atomic.Int64 // unix nanoseconds of the last trip
	lastUsed atomic.Int64 // unix nanoseconds of the last request: idle breakers are forgotten
}

// breakerFor returns url's breaker, or nil when breakers are off.
func (d *dispatcher) breakerFor(url string) *breaker {
	cfg := d.w.cfg
	if cfg.BreakerFailures <= 0 {
		return nil
	}
	d.breakerMu.Lock()
	defer d.breakerMu.Unlock()
	if b, ok := d.breakers[url]; ok {
		b.lastUsed.Store(time.Now().UnixNano())
		return b
	}
	b := &breaker{cooldown: cfg.BreakerCooldown}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        url,
		MaxRequests: 1, // one probe when half-open
		Timeout:     cfg.BreakerCooldown,
		// Counts cover the last minute, in 10s buckets. Failures in a row alone
		// would trip on an endpoint failing half its requests under
		// concurrency (completions interleave); it must also have failed at
		// least 80% of the minute's requests: down, not flaky.
		Interval:     time.Minute,
		BucketPeriod: 10 * time.Second,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return trips(c, cfg.BreakerFailures) },
		IsExcluded:   func(err error) bool { return errors.Is(err, errStopped) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
				d.w.metrics.breakerOpen.Inc()
			}
			d.log.Info("circuit breaker changed state", "endpoint", url, "from", from.String(), "to", to.String())
		},
	})
	b.lastUsed.Store(time.Now().UnixNano())
	d.breakers[url] = b
	return b
}

// trips says whether counts open a breaker: failures failures in a row, and at
// least 80% of the window's requests failed.
func trips(c gobreaker.Counts, failures int) bool {
	return c.ConsecutiveFailures >= uint32(failures) && c.TotalFailures*5 >= c.Requests*4
}

// retryAt is when a delivery the breaker refused should come back: just after
// the breaker half-opens (spread over a fifth of the cooldown, so the backlog
// does not return at one instant), or, while the probe is out, a little later.
func (b *breaker) retryAt(err error) time.Time {
	jitter := time.Duration(rand.Int64N(int64(b.cooldown/5) + 1))
	if errors.Is(err, gobreaker.ErrOpenState) {
		reopen := time.Unix(0, b.openedAt.Load()).Add(b.cooldown)
		return maxTime(reopen, time.Now()).Add(jitter)
	}
	return time.Now().Add(min(b.cooldown, time.Second) + jitter) // half-open: the probe decides
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// breakerFailure says whether an attempt says the endpoint is down or
// overloaded (which opens breakers) rather than refusing this one request.
func breakerFailure(res sender.Result) bool {
	if res.Err == nil {
		return false
	}
	switch c := res.StatusCode; {
	case c == 0: // no response: timeout, refused, reset, DNS
		return true
	case c >= 500, c == http.StatusTooManyRequests, c == http.StatusRequestTimeout:
		return true
	}
	return false
}
