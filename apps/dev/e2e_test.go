package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const testToken = "test-token-0123456789"

// harness runs the whole platform against a fresh database and either the
// broker named by ECS_KAFKA_BROKERS (real Kafka) or an embedded kfake. Topic
// names and the consumer group are unique per test, so tests can share a broker.
type harness struct {
	t      *testing.T
	st     *stack
	pool   *pgxpool.Pool
	base   string
	client *http.Client
	lanes  int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	level := slog.LevelError
	if os.Getenv("ECS_TEST_LOG") != "" { // e.g. ECS_TEST_LOG=1 to see the platform's warnings
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var brokers []string
	if env := os.Getenv("ECS_KAFKA_BROKERS"); env != "" {
		brokers = strings.Split(env, ",")
		t.Logf("using real Kafka at %v", brokers)
	} else {
		emb, err := kafka.StartEmbedded("", log)
		require.NoError(t, err)
		t.Cleanup(emb.Close)
		brokers = emb.Brokers()
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	cfg := stackConfig{
		HTTPAddr: "127.0.0.1:0",
		API:      api.Config{Tokens: []string{testToken}, AllowHTTPURLs: true, Egress: egress.Config{}.AllowLoopback()},
		Relay:    relay.Config{PollInterval: 200 * time.Millisecond, LeaderRetry: 200 * time.Millisecond},
		Worker: worker.Config{
			Group:         "ecs-test-" + suffix,
			RetrySchedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond},
			MaxAttempts:   30,
			PollInterval:  100 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond, StaleAfter: time.Second,
			MetadataRefresh: time.Second,
			// A worker killed without leaving the group is replaced within
			// seconds (brokers allow 6s at the least).
			SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second,
			HTTP: sender.Config{Timeout: 5 * time.Second, Egress: egress.Config{}.AllowLoopback()},
		},
		Kafka: kafka.Config{
			Brokers:     brokers,
			TopicPrefix: "ecs.test" + suffix + ".",
			DLQTopic:    "ecs.dlq.test" + suffix,
			Partitions:  6,
		},
	}
	cfg.API.KafkaBrokers, cfg.API.DLQTopic = brokers, cfg.Kafka.DLQTopic
	st, err := newStack(t.Context(), cfg, pool, log)
	require.NoError(t, err)
	require.NoError(t, st.start(context.Background()))
	h := &harness{t: t, st: st, pool: pool, base: "http://" + st.HTTP.Addr(), client: &http.Client{Timeout: 30 * time.Second},
		lanes: cfg.Worker.WithDefaults().Lanes}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st.stop(ctx)
		h.client.CloseIdleConnections()
	})
	return h
}

// call sends a JSON request and decodes a JSON answer into out (when not nil).
func (h *harness) call(method, path string, body any, out any, headers ...string) (int, http.Header) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(h.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	require.NoError(h.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	if out != nil && len(raw) > 0 {
		require.NoError(h.t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode, resp.Header
}

func (h *harness) subscribe(r *receiver, types ...string) {
	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	code, _ := h.call("POST", "/v1/subscriptions", map[string]any{"url": r.srv.URL, "event_types": types}, &sub)
	require.Equal(h.t, http.StatusCreated, code)
	require.True(h.t, strings.HasPrefix(sub.Secret, "whsec_"))
	r.secret.Store(&sub.Secret)
}

type target struct {
	r     *receiver
	types map[string]bool
}

// produce sends n events over keys keys and types, from several concurrent
// producers; each key is sent by one producer, one event at a time, so the order
// of a key's events is the order the API accepted them. Every replayEvery-th
// event is sent twice with its idempotency key and must come back as the same
// event. It tells each target which event ids it must receive.
func (h *harness) produce(n, keys int, types []string, targets []target, replayEvery int) {
	h.t.Helper()
	const producers = 8
	var wg sync.WaitGroup
	perKey := n / keys
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perKey {
				for k := p; k < keys; k += producers {
					key := fmt.Sprintf("key-%03d", k)
					typ := types[(k+seq)%len(types)]
					body := map[string]any{"type": typ, "key": key, "data": map[string]any{"key": key, "seq": seq}}
					idem := fmt.Sprintf("%s-%d", key, seq)
					var ev struct {
						ID string `json:"id"`
					}
					code, _ := h.call("POST", "/v1/events", body, &ev, api.IdempotencyKeyHeader, idem)
					if code != http.StatusAccepted {
						h.t.Errorf("POST /v1/events: status %d", code)
						return
					}
					for _, tg := range targets {
						if tg.types[typ] {
							tg.r.expect(ev.ID)
						}
					}
					if replayEvery > 0 && (k*perKey+seq)%replayEvery == 0 {
						var again struct {
							ID string `json:"id"`
						}
						code, hdr := h.call("POST", "/v1/events", body, &again, api.IdempotencyKeyHeader, idem)
						if code != http.StatusAccepted || again.ID != ev.ID || hdr.Get(api.ReplayedHeader) != "true" {
							h.t.Errorf("idempotent replay: status %d, id %s (want %s)", code, again.ID, ev.ID)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, tg := range targets {
		tg.r.seal()
	}
}

// wait blocks until every target received every expected event, or fails.
func (h *harness) wait(targets []target, limit time.Duration) {
	h.t.Helper()
	deadline := time.After(limit)
	for _, tg := range targets {
		select {
		case <-tg.r.done:
		case <-deadline:
			var msg []string
			for _, tg := range targets {
				got, want := tg.r.progress()
				msg = append(msg, fmt.Sprintf("%s %d/%d", tg.r.name, got, want))
			}
			h.t.Fatalf("not every event arrived within %v: %s\n%s", limit, strings.Join(msg, ", "), h.diagnose(targets))
		}
	}
}

// diagnose describes where the missing events are, for a failure message.
func (h *harness) diagnose(targets []target) string {
	ctx := context.Background()
	var out []string
	for _, tg := range targets {
		tg.r.mu.Lock()
		var missing []string
		for id := range tg.r.want {
			if tg.r.ok[id] == 0 {
				missing = append(missing, id)
			}
		}
		tg.r.mu.Unlock()
		for i, id := range missing {
			if i == 5 {
				out = append(out, fmt.Sprintf("%s: %d more missing", tg.r.name, len(missing)-5))
				break
			}
			var typ, key string
			var keySeq int64
			var outboxRows, deliveries int
			var states []string
			_ = h.pool.QueryRow(ctx, `SELECT type, coalesce(key, ''), coalesce(key_seq, 0),
				(SELECT count(*) FROM outbox WHERE event_id = e.id),
				(SELECT count(*) FROM deliveries WHERE event_id = e.id),
				coalesce((SELECT array_agg(status || '/' || attempts || '/' || coalesce(owner::text, '-')) FROM deliveries WHERE event_id = e.id), '{}')
				FROM events e WHERE id = $1`, id).Scan(&typ, &key, &keySeq, &outboxRows, &deliveries, &states)
			var progress int64
			_ = h.pool.QueryRow(ctx, `SELECT coalesce((SELECT seq FROM key_progress WHERE key = $1), -1)`, key).Scan(&progress)
			out = append(out, fmt.Sprintf("%s missing %s: type %s key %s key_seq %d (key progress %d); outbox rows %d; deliveries %d %v",
				tg.r.name, id, typ, key, keySeq, progress, outboxRows, deliveries, states))
		}
	}
	var workers []string
	_ = h.pool.QueryRow(ctx, `SELECT coalesce(array_agg(id::text || ' beat ' || (now() - heartbeat_at)::text), '{}') FROM workers`).Scan(&workers)
	out = append(out, fmt.Sprintf("current worker %s; workers table %v", h.st.Worker.ID(), workers))
	return strings.Join(out, "\n")
}

func toSet(types ...string) map[string]bool {
	m := map[string]bool{}
	for _, t := range types {
		m[t] = true
	}
	return m
}

// checkDeliveryLog asserts what PostgreSQL recorded: every delivery succeeded,
// none has two successful attempts, and the outbox drained.
func (h *harness) checkDeliveryLog(wantDeliveries int) {
	h.t.Helper()
	ctx := context.Background()
	// The subscriber has answered the last request a moment before the worker
	// records it: wait for the log to catch up.
	var total, succeeded int
	require.Eventually(h.t, func() bool {
		err := h.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM deliveries`).
			Scan(&total, &succeeded)
		return err == nil && succeeded == wantDeliveries
	}, 10*time.Second, 10*time.Millisecond, "succeeded deliveries: %d of %d", succeeded, wantDeliveries)
	require.Equal(h.t, wantDeliveries, total, "one delivery per matching (subscription, event)")
	var twice int
	require.NoError(h.t, h.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT delivery_id FROM delivery_attempts
		WHERE succeeded GROUP BY delivery_id HAVING count(*) > 1) x`).Scan(&twice))
	require.Zero(h.t, twice, "deliveries with two successful attempts")
	var backlog int
	require.NoError(h.t, h.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&backlog))
	require.Zero(h.t, backlog, "outbox rows left")
}

func TestE2EDeliversEveryEventOnceInOrder(t *testing.T) {
	healthy := newReceiver(t, "healthy", 0, 0)
	flaky := newReceiver(t, "flaky", 2, 0) // fails every other request
	slow := newReceiver(t, "slow", 0, 20*time.Millisecond)
	h := newHarness(t)
	types := []string{"order.created", "order.paid", "user.signup"}
	for _, ty := range types {
		code, _ := h.call("POST", "/v1/event-types", map[string]any{"name": ty}, nil)
		require.Equal(t, http.StatusCreated, code)
	}
	h.subscribe(healthy, types...)
	h.subscribe(flaky, types[0], types[1])
	h.subscribe(slow, types[0], types[2])
	targets := []target{
		{healthy, toSet(types...)},
		{flaky, toSet(types[0], types[1])},
		{slow, toSet(types[0], types[2])},
	}

	const events, keys = 2100, 42
	start := time.Now()
	h.produce(events, keys, types, targets, 25)
	accepted := time.Since(start)
	h.wait(targets[:1], 3*time.Minute)
	healthyDone := time.Since(start)
	h.wait(targets, 3*time.Minute)
	elapsed := time.Since(start)

	want := 0
	for _, tg := range targets {
		tg.r.mu.Lock()
		require.Zero(t, tg.r.badSig, "%s: requests with a bad signature", tg.r.name)
		require.Len(t, tg.r.ok, len(tg.r.want), "%s: received ids that were not expected", tg.r.name)
		for id := range tg.r.want {
			require.Equal(t, 1, tg.r.ok[id], "%s: webhook-id %s answered 2xx %d times", tg.r.name, id, tg.r.ok[id])
		}
		want += len(tg.r.want)
		tg.r.mu.Unlock()
	}
	healthy.mu.Lock()
	require.Len(t, healthy.seqs, keys)
	for key, seqs := range healthy.seqs {
		for i := 1; i < len(seqs); i++ {
			require.Less(t, seqs[i-1], seqs[i], "healthy subscriber got %s out of order: %v", key, seqs)
		}
	}
	healthy.mu.Unlock()
	require.Greater(t, flaky.requests.Load(), int64(len(flaky.want)), "the flaky subscriber needed retries")
	h.checkDeliveryLog(want)

	t.Logf("%d events accepted in %v (%.0f/s); the healthy subscriber had all %d in %v (%.0f events/s end to end); "+
		"all %d deliveries, slow and failing subscribers included, in %v (%.0f deliveries/s)",
		events, accepted.Round(time.Millisecond), float64(events)/accepted.Seconds(),
		len(healthy.want), healthyDone.Round(time.Millisecond), float64(len(healthy.want))/healthyDone.Seconds(),
		want, elapsed.Round(time.Millisecond), float64(want)/elapsed.Seconds())
}

func TestCrashRelayAndWorkerMidStream(t *testing.T) {
	healthy := newReceiver(t, "healthy", 0, 0)
	flaky := newReceiver(t, "flaky", 3, 2*time.Millisecond)
	h := newHarness(t)
	types := []string{"order.created", "order.paid"}
	for _, ty := range types {
		code, _ := h.call("POST", "/v1/event-types", map[string]any{"name": ty}, nil)
		require.Equal(t, http.StatusCreated, code)
	}
	h.subscribe(healthy, types...)
	h.subscribe(flaky, types[0])
	targets := []target{{healthy, toSet(types...)}, {flaky, toSet(types[0])}}

	const events, keys = 1200, 24
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		h.produce(events, keys, types, targets, 0)
	}()

	ctx := context.Background()
	killedAt := 0
	for round := range 2 {
		at := killedAt + 400 // of 1,800: both kills land mid-stream
		deadline := time.Now().Add(2 * time.Minute)
		for healthy.successCount() < at {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: deliveries stalled at %d (want %d)\n%s", round, healthy.successCount(), at, h.diagnose(targets))
			}
			time.Sleep(2 * time.Millisecond) // polling a counter the receiver updates
		}
		// Abrupt: contexts cancelled mid-batch and mid-request, no offsets
		// committed, no deliveries handed back, no outbox rows acknowledged.
		h.st.Relay.Kill()
		h.st.Worker.Kill()
		killedAt = healthy.successCount()
		t.Logf("round %d: killed relay and worker after %d deliveries to the healthy subscriber", round, killedAt)
		require.NoError(t, h.st.Relay.Start(ctx))
		require.NoError(t, h.st.Worker.Start(ctx))
	}
	<-produced
	h.wait(targets, 3*time.Minute)

	want, dup := 0, 0
	for _, tg := range targets {
		tg.r.mu.Lock()
		require.Zero(t, tg.r.badSig)
		require.Len(t, tg.r.ok, len(tg.r.want), "%s: unexpected ids", tg.r.name)
		for id := range tg.r.want {
			require.GreaterOrEqual(t, tg.r.ok[id], 1, "%s: %s lost", tg.r.name, id)
			dup += tg.r.ok[id] - 1
		}
		want += len(tg.r.want)
		tg.r.mu.Unlock()
	}
	// The delivery log never records a second success; on the wire, the only
	// repeats allowed are requests in flight at a kill whose 2xx the killed
	// worker never read (at most one per lane per subscription per kill): the
	// subscriber dedups them by webhook-id, as Standard Webhooks asks.
	h.checkDeliveryLog(want)
	require.LessOrEqual(t, dup, 2*h.lanes*len(targets), "repeats beyond what was in flight at the kills")
	t.Logf("after 2 crashes: %d deliveries, none lost; %d wire-level repeats of in-flight requests", want, dup)
}

func TestDeadLettersListedAndRedrivenThroughTheAPI(t *testing.T) {
	down := newReceiver(t, "down", 1, 0) // fails every request until healed
	h := newHarness(t)
	code, _ := h.call("POST", "/v1/event-types", map[string]any{"name": "order.created"}, nil)
	require.Equal(t, http.StatusCreated, code)
	var sub struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	code, _ = h.call("POST", "/v1/subscriptions", map[string]any{"url": down.srv.URL, "event_types": []string{"order.created"},
		"retry_policy": map[string]any{"max_attempts": 1}}, &sub)
	require.Equal(t, http.StatusCreated, code)
	down.secret.Store(&sub.Secret)
	var ids []string
	for i := range 3 {
		var ev struct {
			ID string `json:"id"`
		}
		code, _ := h.call("POST", "/v1/events", map[string]any{"type": "order.created", "key": fmt.Sprint(i), "data": map[string]any{"key": fmt.Sprint(i), "seq": 0}}, &ev)
		require.Equal(t, http.StatusAccepted, code)
		ids = append(ids, ev.ID)
	}
	var dead struct {
		Data []struct {
			EventID        string `json:"event_id"`
			SubscriptionID string `json:"subscription_id"`
			Attempts       int    `json:"attempts"`
			Reason         string `json:"reason"`
		} `json:"data"`
	}
	require.Eventually(t, func() bool {
		code, _ := h.call("GET", "/v1/dead-letters?subscription_id="+sub.ID, nil, &dead)
		return code == http.StatusOK && len(dead.Data) == 3
	}, 30*time.Second, 50*time.Millisecond, "three records in the dead-letter topic")
	for _, d := range dead.Data {
		require.Contains(t, ids, d.EventID)
		require.Equal(t, sub.ID, d.SubscriptionID)
		require.Equal(t, 1, d.Attempts)
		require.Equal(t, "status 500", d.Reason)
	}

	// The record reaches the topic just before the delivery is recorded dead.
	require.Eventually(t, func() bool {
		var list struct {
			Data []any `json:"data"`
		}
		code, _ := h.call("GET", "/v1/deliveries?status=dead&subscription_id="+sub.ID, nil, &list)
		return code == http.StatusOK && len(list.Data) == 3
	}, 30*time.Second, 20*time.Millisecond)
	down.failEvery = 0 // healed (no request is in flight: every delivery is dead)
	for _, id := range ids {
		down.expect(id)
	}
	down.seal()
	var redriven struct {
		Deliveries int `json:"deliveries"`
	}
	code, _ = h.call("POST", "/v1/deliveries:redrive", map[string]any{"subscription_id": sub.ID}, &redriven)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, 3, redriven.Deliveries)
	h.wait([]target{{down, toSet("order.created")}}, time.Minute)
}
