package worker

import (
	"testing"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

// TestLimitsAreSharedBetweenWorkers: a subscription's limits hold for the
// deployment, so each live worker takes an even share: the rate exactly,
// concurrency rounded down but at least one, never more than its lanes.
func TestLimitsAreSharedBetweenWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		peers, concurrency, rate int
		wantConc                 int
		wantRate                 float64
	}{
		{peers: 1, concurrency: 0, rate: 0, wantConc: 16, wantRate: 0},
		{peers: 1, concurrency: 4, rate: 10, wantConc: 4, wantRate: 10},
		{peers: 2, concurrency: 4, rate: 10, wantConc: 2, wantRate: 5},
		{peers: 3, concurrency: 4, rate: 10, wantConc: 1, wantRate: 10.0 / 3},
		{peers: 8, concurrency: 2, rate: 1, wantConc: 1, wantRate: 0.125},
		{peers: 1, concurrency: 100, rate: 0, wantConc: 16, wantRate: 0},
	} {
		w := &Worker{cfg: Config{Lanes: 16}}
		w.peers.Store(int64(tc.peers))
		d := &dispatcher{w: w, limits: map[uuid.UUID]*subLimits{}}
		l := d.limitsFor(job{subscriptionID: uuid.New(), concurrency: tc.concurrency, rateLimit: tc.rate})
		require.Equal(t, tc.wantConc, l.concurrency, "%+v", tc)
		require.Equal(t, tc.wantConc, cap(l.sem), "%+v", tc)
		require.InDelta(t, tc.wantRate, l.rate, 1e-9, "%+v", tc)
		require.Equal(t, tc.wantRate > 0, l.lim != nil, "%+v", tc)
	}
}

// TestBreakerTripsOnDownNotFlaky: failures in a row open the breaker only when
// most of the window's requests failed, so an endpoint failing every other
// request under concurrency (whose completions can line up five failures) keeps
// getting traffic.
func TestBreakerTripsOnDownNotFlaky(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		consecutive, failures, requests uint32
		want                            bool
	}{
		{5, 5, 5, true},     // down from the start
		{5, 45, 50, true},   // 90% failing
		{4, 4, 4, false},    // not enough in a row yet
		{5, 50, 100, false}, // flaky: half fail
		{7, 70, 100, false}, // 70% failing: still answering often
		{20, 80, 100, true}, // 80%
	} {
		c := gobreaker.Counts{Requests: tc.requests, TotalFailures: tc.failures, ConsecutiveFailures: tc.consecutive}
		require.Equal(t, tc.want, trips(c, 5), "%+v", tc)
	}
}
