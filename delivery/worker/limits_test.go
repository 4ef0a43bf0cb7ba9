package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

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

// TestIdleLanesAreReaped: a subscription's lanes close after LaneIdle without a
// delivery (their goroutines end), unless something is queued; its limits are
// forgotten; the next delivery opens fresh lanes.
func TestIdleLanesAreReaped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Worker{cfg: Config{Lanes: 2, LaneQueue: 4}.WithDefaults(), metrics: newMetrics(nil)}
	w.peers.Store(1)
	d := newDispatcher(ctx, w, uuid.New(), nil, slog.New(slog.DiscardHandler))
	defer func() { cancel(); d.stop() }()
	d.soft.Store(true) // lanes hand jobs back instead of sending them
	a, b := uuid.New(), uuid.New()
	require.True(t, d.offer(job{subscriptionID: a, orderKey: "k"}))
	d.limitsFor(job{subscriptionID: a})
	now := time.Now()
	require.Zero(t, d.reap(now, time.Minute), "recently used lanes stay")

	// b's lane has a job queued behind one that never ends: not reaped.
	d.mu.Lock()
	d.lanes[b] = []chan job{make(chan job, 4)}
	d.lanes[b][0] <- job{subscriptionID: b}
	d.lastOffer[b] = now.Add(-time.Hour)
	d.mu.Unlock()
	require.Eventually(t, func() bool { // a's lane has handed its job back
		d.relMu.Lock()
		defer d.relMu.Unlock()
		return len(d.released) == 1
	}, 5*time.Second, time.Millisecond)

	require.Equal(t, 1, d.reap(now.Add(2*time.Minute), time.Minute), "a's idle lanes close; b's queued lane stays")
	d.mu.Lock()
	_, hasA := d.lanes[a]
	_, hasB := d.lanes[b]
	d.mu.Unlock()
	require.False(t, hasA)
	require.True(t, hasB)
	d.limMu.Lock()
	_, limA := d.limits[a]
	d.limMu.Unlock()
	require.False(t, limA, "a's limits are forgotten")

	require.True(t, d.offer(job{subscriptionID: a, orderKey: "k"}), "the next delivery opens fresh lanes")
	d.mu.Lock()
	require.Len(t, d.lanes[a], 2)
	_ = <-d.lanes[b][0] // empty b's hand-made lane so stop can close it
	d.mu.Unlock()
}
