package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/delivery/webhooktest"
)

// arrivals records when each webhook-id first reached an endpoint.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

// TestE2EIsolationLatency measures, through the whole platform (API, relay,
// Kafka, worker), a healthy subscriber's latency from the API's 202 to the
// webhook's arrival: first alone, then with a dead neighbour (accepts the
// connection and never answers, so every attempt times out) and a slow one
// (300ms per request) subscribed to the same events. It runs on kfake and, in
// CI, on real Kafka. The bound is loose, as befits a shared 2-core machine; the
// figures are logged.
func TestE2EIsolationLatency(t *testing.T) {
	h := newHarness(t)
	code, _ := h.call("POST", "/v1/event-types", map[string]any{"name": "order.created"}, nil)
	require.Equal(t, http.StatusCreated, code)

	healthy := &arrivals{at: map[string]time.Time{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		id := r.Header.Get(signature.HeaderID)
		healthy.mu.Lock()
		if _, ok := healthy.at[id]; !ok {
			healthy.at[id] = now
		}
		healthy.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hs.Close)
	dead := webhooktest.Dead(t)
	slow := webhooktest.Slow(t, 300*time.Millisecond)
	subscribe := func(url string, extra map[string]any) {
		body := map[string]any{"url": url, "event_types": []string{"order.created"}}
		for k, v := range extra {
			body[k] = v
		}
		code, _ := h.call("POST", "/v1/subscriptions", body, nil)
		require.Equal(t, http.StatusCreated, code)
	}
	subscribe(hs.URL, nil)

	const n, rate = 400, 200
	run := func() []time.Duration {
		accepted := map[string]time.Time{}
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			var ev struct {
				ID string `json:"id"`
			}
			code, _ := h.call("POST", "/v1/events", map[string]any{"type": "order.created", "key": "k" + strconv.Itoa(i%26),
				"data": map[string]any{"i": i}}, &ev)
			require.Equal(t, http.StatusAccepted, code)
			accepted[ev.ID] = time.Now()
		}
		require.Eventually(t, func() bool {
			healthy.mu.Lock()
			defer healthy.mu.Unlock()
			for id := range accepted {
				if _, ok := healthy.at[id]; !ok {
					return false
				}
			}
			return true
		}, 2*time.Minute, 10*time.Millisecond)
		healthy.mu.Lock()
		defer healthy.mu.Unlock()
		out := make([]time.Duration, 0, n)
		for id, at := range accepted {
			out = append(out, max(0, healthy.at[id].Sub(at)))
		}
		slices.Sort(out)
		return out
	}
	// Warm up: the first event creates its topic, which the worker's group
	// then discovers and joins (a rebalance), and the first record of each
	// partition sets up the producer's and the consumer's state for it. Send
	// one event per key and measure only after all of them arrived.
	warm := map[string]bool{}
	for i := range 26 {
		var ev struct {
			ID string `json:"id"`
		}
		code, _ = h.call("POST", "/v1/events", map[string]any{"type": "order.created", "key": "k" + strconv.Itoa(i), "data": map[string]any{}}, &ev)
		require.Equal(t, http.StatusAccepted, code)
		warm[ev.ID] = true
	}
	require.Eventually(t, func() bool {
		healthy.mu.Lock()
		defer healthy.mu.Unlock()
		for id := range warm {
			if _, ok := healthy.at[id]; !ok {
				return false
			}
		}
		return true
	}, 2*time.Minute, 10*time.Millisecond)
	time.Sleep(time.Second) // let a rebalance that the new topic may still cause settle
	alone := run()
	subscribe(dead.URL, map[string]any{"timeout_ms": 1000})
	subscribe(slow.URL, nil)
	crowded := run()

	p := func(d []time.Duration, q float64) time.Duration { return d[min(len(d)-1, int(float64(len(d))*q))] }
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"alone", alone}, {"with dead+slow", crowded}} {
		t.Logf("202 to webhook, healthy subscriber %-15s p50 %6.1fms  p90 %6.1fms  p99 %6.1fms  max %6.1fms (%d events at %d/s)",
			r.name, msf(p(r.d, .5)), msf(p(r.d, .9)), msf(p(r.d, .99)), msf(r.d[len(r.d)-1]), n, rate)
	}
	require.Less(t, p(crowded, .5), p(alone, .5)+100*time.Millisecond, "p50")
	require.Less(t, p(crowded, .99), p(alone, .99)+500*time.Millisecond, "p99")
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
