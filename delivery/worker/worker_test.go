package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

type testBundle struct {
	pool     *pgxpool.Pool
	events   *outbox.Store
	subs     *delivery.Store
	kcfg     kafka.Config
	producer *kgo.Client
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	emb, err := kafka.StartEmbedded("", logging.Discard())
	require.NoError(t, err)
	t.Cleanup(emb.Close)
	kcfg := kafka.Config{Brokers: emb.Brokers(), Partitions: 3}.WithDefaults()
	events := outbox.NewStore(pool, kcfg.Topic)
	for _, typ := range []string{"order.created", "order.paid"} {
		_, err = events.CreateEventType(context.Background(), typ, outbox.EventTypeSpec{Enabled: true})
		require.NoError(t, err)
		_, err = kafka.NewTopics(mustClient(t, kcfg), kcfg).Ensure(context.Background(), kcfg.Topic(typ))
		require.NoError(t, err)
	}
	return &testBundle{pool: pool, events: events, subs: delivery.NewStore(pool), kcfg: kcfg, producer: mustClient(t, kcfg)}
}

func mustClient(t *testing.T, kcfg kafka.Config, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kcfg.Brokers...)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

func (b *testBundle) startWorker(t *testing.T, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.Group = "g"
	cfg.PollInterval = 50 * time.Millisecond
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.StaleAfter = 500 * time.Millisecond
	cfg.MetadataRefresh = 200 * time.Millisecond
	if cfg.RetrySchedule == nil {
		cfg.RetrySchedule = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond}
		if cfg.MaxAttempts == 0 {
			cfg.MaxAttempts = 8
		}
	}
	if cfg.HTTP.Timeout == 0 {
		cfg.HTTP = sender.Config{Timeout: 5 * time.Second}
	}
	if cfg.HTTP.Egress.AllowNetworks == nil {
		cfg.HTTP.Egress = egress.Config{}.AllowLoopback() // the receivers are httptest servers on loopback
	}
	w, err := worker.New(cfg, b.kcfg, b.pool, logging.Discard(), nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { w.Stop(context.Background()) })
	return w
}

func (b *testBundle) subscribe(t *testing.T, url string) delivery.Subscription {
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	sub, err := b.subs.CreateSubscription(context.Background(), delivery.Subscription{
		ID: uuid.Must(uuid.NewV7()), URL: url, EventTypes: []string{"order.created", "order.paid"}, Secret: secret})
	require.NoError(t, err)
	return sub
}

// publish stores an event and produces its record the way the relay does;
// copies > 1 produces it again, as a relay killed before deleting its row would.
func (b *testBundle) publish(t *testing.T, key string, copies int) outbox.Event {
	return b.publishType(t, "order.created", key, copies)
}

func (b *testBundle) publishType(t *testing.T, typ, key string, copies int) outbox.Event {
	t.Helper()
	ev := b.store(t, typ, key)
	b.produce(t, ev, copies)
	return ev
}

func (b *testBundle) store(t *testing.T, typ, key string) outbox.Event {
	t.Helper()
	ev, _, err := b.events.Publish(context.Background(), outbox.NewEvent{Type: typ, Key: key, Data: json.RawMessage(`{"n":1}`)})
	require.NoError(t, err)
	return ev
}

// produce sends ev's record copies times, the way the relay does.
func (b *testBundle) produce(t *testing.T, ev outbox.Event, copies int) {
	t.Helper()
	key := ev.Key
	typ := ev.Type
	for range copies {
		rec := &kgo.Record{Topic: b.kcfg.Topic(typ), Key: []byte(key),
			Value: outbox.WebhookBody(ev.Type, ev.CreatedAt, ev.Data),
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderEventID, Value: []byte(ev.ID.String())},
				{Key: kafka.HeaderEventType, Value: []byte(typ)},
				{Key: kafka.HeaderKeySeq, Value: []byte(strconv.FormatInt(ev.KeySeq, 10))}}}
		require.NoError(t, b.producer.ProduceSync(context.Background(), rec).FirstErr())
	}
}

// endpoint answers with the status its policy gives for the n-th request and
// counts 2xx answers per webhook-id.
type endpoint struct {
	srv    *httptest.Server
	n      atomic.Int64
	mu     sync.Mutex
	ok     map[string]int
	signal chan string // receives each webhook-id answered 2xx
}

func newEndpoint(t *testing.T, policy func(n int64) (int, time.Duration)) *endpoint {
	e := &endpoint{ok: map[string]int{}, signal: make(chan string, 1000)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, delay := policy(e.n.Add(1))
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if code < 300 {
			id := r.Header.Get(signature.HeaderID)
			e.mu.Lock()
			e.ok[id]++
			e.mu.Unlock()
			e.signal <- id
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) await(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for i := range n {
		select {
		case <-e.signal:
		case <-deadline:
			t.Fatalf("got %d of %d deliveries", i, n)
		}
	}
}

func (b *testBundle) delivery(t *testing.T, eventID uuid.UUID) delivery.Delivery {
	t.Helper()
	ds, _, err := b.subs.ListDeliveries(context.Background(), delivery.Filter{EventID: &eventID})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	return ds[0]
}

func TestWorkerDeliversAReproducedRecordOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	b.subscribe(t, ep.srv.URL)
	b.startWorker(t, worker.Config{})
	ev := b.publish(t, "k", 3)
	second := b.publish(t, "k", 1) // a later record proves the copies were consumed
	ep.await(t, 2, 20*time.Second)
	require.Eventually(t, func() bool { return b.status(second.ID) == delivery.StatusSucceeded }, 10*time.Second, 10*time.Millisecond)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	require.Equal(t, 1, ep.ok[ev.ID.String()])
	d := b.delivery(t, ev.ID)
	require.Equal(t, delivery.StatusSucceeded, d.Status)
	require.Len(t, d.AttemptLog, 1)
}

func TestWorkerDeadLettersAfterLastAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newEndpoint(t, func(int64) (int, time.Duration) { return 503, 0 })
	sub := b.subscribe(t, ep.srv.URL)
	b.startWorker(t, worker.Config{MaxAttempts: 3})
	ev := b.publish(t, "k", 1)

	dlq := mustClient(t, b.kcfg, kgo.ConsumeTopics(b.kcfg.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rec *kgo.Record
	for rec == nil && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) { rec = r })
	}
	require.NotNil(t, rec, "a dead-letter record")
	headers := map[string]string{}
	for _, h := range rec.Headers {
		headers[h.Key] = string(h.Value)
	}
	require.Equal(t, ev.ID.String(), headers[kafka.HeaderEventID])
	require.Equal(t, sub.ID.String(), headers[kafka.HeaderDLQSubscription])
	require.Equal(t, "3", headers[kafka.HeaderDLQAttempts])
	require.Equal(t, "status 503", headers[kafka.HeaderDLQReason])
	require.JSONEq(t, string(outbox.WebhookBody(ev.Type, ev.CreatedAt, ev.Data)), string(rec.Value))

	require.Eventually(t, func() bool { return b.status(ev.ID) == delivery.StatusDead }, 10*time.Second, 10*time.Millisecond)
	d := b.delivery(t, ev.ID)
	require.Len(t, d.AttemptLog, 3)
	for _, a := range d.AttemptLog {
		require.False(t, a.Succeeded)
		require.Equal(t, 503, *a.StatusCode)
	}
	require.Equal(t, int64(3), ep.n.Load())
}

func TestWorkerRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var healthy atomic.Bool
	ep := newEndpoint(t, func(int64) (int, time.Duration) {
		if healthy.Load() {
			return 204, 0
		}
		return 500, 0
	})
	b.subscribe(t, ep.srv.URL)
	// A retry far in the future: only the database remembers it.
	w := b.startWorker(t, worker.Config{RetrySchedule: []time.Duration{time.Second}, MaxAttempts: 8})
	ev := b.publish(t, "k", 1)
	require.Eventually(t, func() bool { return ep.n.Load() >= 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.delivery(t, ev.ID).Attempts == 1 }, 10*time.Second, 10*time.Millisecond)
	w.Stop(context.Background())

	healthy.Store(true)
	b.startWorker(t, worker.Config{RetrySchedule: []time.Duration{time.Second}, MaxAttempts: 8})
	ep.await(t, 1, 20*time.Second)
	require.Eventually(t, func() bool { return b.status(ev.ID) == delivery.StatusSucceeded }, 10*time.Second, 10*time.Millisecond)
	d := b.delivery(t, ev.ID)
	require.Len(t, d.AttemptLog, 2)
	require.False(t, d.AttemptLog[0].Succeeded)
	require.True(t, d.AttemptLog[1].Succeeded)
}

func TestWorkerSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	slow := newEndpoint(t, func(int64) (int, time.Duration) { <-release; return 200, 0 })
	fast := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	b.subscribe(t, slow.srv.URL)
	b.subscribe(t, fast.srv.URL)
	b.startWorker(t, worker.Config{Lanes: 4, LaneQueue: 8})
	t.Cleanup(func() { close(release) }) // runs before the worker stops
	for i := range 100 {
		b.publish(t, "key-"+strconv.Itoa(i%10), 1)
	}
	// Every slow lane is stuck and its queue overflows to the database, yet the
	// fast subscriber gets all 100.
	fast.await(t, 100, 20*time.Second)
	slow.mu.Lock()
	require.Empty(t, slow.ok)
	slow.mu.Unlock()
}

func TestWorkerRecordsAnOutcomePostgresRefusedAtFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// While refuse_attempts has a row, writing an attempt fails.
	_, err := b.pool.Exec(ctx, `
		CREATE TABLE refuse_attempts (x int);
		INSERT INTO refuse_attempts VALUES (1);
		CREATE FUNCTION refuse_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT 1 FROM refuse_attempts) THEN RAISE EXCEPTION 'injected: database refuses'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON delivery_attempts FOR EACH ROW EXECUTE FUNCTION refuse_attempt();`)
	require.NoError(t, err)
	ep := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	b.subscribe(t, ep.srv.URL)
	b.startWorker(t, worker.Config{})
	ev := b.publish(t, "k", 1)
	ep.await(t, 1, 20*time.Second)
	// The lane is not stuck retrying the write: the key's next event goes out.
	next := b.publish(t, "k", 1)
	ep.await(t, 1, 2*time.Second)

	time.Sleep(300 * time.Millisecond) // several poll rounds fail to record them
	require.Equal(t, delivery.StatusPending, b.delivery(t, ev.ID).Status)
	_, err = b.pool.Exec(ctx, `DELETE FROM refuse_attempts`)
	require.NoError(t, err)

	for _, id := range []uuid.UUID{ev.ID, next.ID} {
		require.Eventually(t, func() bool { return b.status(id) == delivery.StatusSucceeded }, 10*time.Second, 10*time.Millisecond)
		require.Len(t, b.delivery(t, id).AttemptLog, 1)
	}
	require.Equal(t, int64(2), ep.n.Load(), "the successes were recorded, not sent again")
}

func TestWorkersShareTheGroupThroughRebalances(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	b.subscribe(t, ep.srv.URL)
	w1 := b.startWorker(t, worker.Config{})
	const n = 600
	var ids []uuid.UUID
	for i := 0; i < n; i += 2 {
		// Each key's events come in pairs across the two topics, the second's
		// record produced first, so the sequencer is always holding records
		// when partitions move.
		key := "key-" + strconv.Itoa(i%12)
		first, second := b.store(t, "order.created", key), b.store(t, "order.paid", key)
		b.produce(t, second, 1)
		b.produce(t, first, 1)
		ids = append(ids, first.ID, second.ID)
		switch i {
		case n / 3:
			b.startWorker(t, worker.Config{}) // joins: partitions move
		case 2 * n / 3:
			w1.Stop(context.Background()) // leaves: they move back
		}
	}
	ep.await(t, n, 60*time.Second)
	for _, id := range ids {
		require.Eventually(t, func() bool { return b.status(id) == delivery.StatusSucceeded }, 10*time.Second, 5*time.Millisecond)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	require.Len(t, ep.ok, n)
}

func TestWorkerHoldsPausedAndSkipsDisabledSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	paused := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	disabled := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	ps := b.subscribe(t, paused.srv.URL)
	ds := b.subscribe(t, disabled.srv.URL)
	ps.State = delivery.StatePaused
	_, err := b.subs.UpdateSubscription(ctx, ps, ps.Version)
	require.NoError(t, err)
	reason := "retired"
	ds.State, ds.DisabledReason = delivery.StateDisabled, &reason
	_, err = b.subs.UpdateSubscription(ctx, ds, ds.Version)
	require.NoError(t, err)
	b.startWorker(t, worker.Config{})

	var ids []uuid.UUID
	for i := range 5 {
		ids = append(ids, b.publish(t, "k"+strconv.Itoa(i), 1).ID)
	}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			ds, _, _ := b.subs.ListDeliveries(ctx, delivery.Filter{EventID: &id})
			return len(ds) == 1 && ds[0].Status == delivery.StatusPending
		}, 10*time.Second, 10*time.Millisecond, "the paused subscription's delivery accumulates")
	}
	time.Sleep(300 * time.Millisecond) // several poll rounds: nothing may be sent while paused
	require.Zero(t, paused.n.Load())

	cur, err := b.subs.GetSubscription(ctx, ps.ID)
	require.NoError(t, err)
	cur.State = delivery.StateActive
	_, err = b.subs.UpdateSubscription(ctx, cur, cur.Version)
	require.NoError(t, err)
	paused.await(t, 5, 20*time.Second)
	require.Zero(t, disabled.n.Load(), "a disabled subscription gets no deliveries")
	for _, id := range ids {
		ds, _, err := b.subs.ListDeliveries(ctx, delivery.Filter{EventID: &id})
		require.NoError(t, err)
		require.Len(t, ds, 1, "none created for the disabled subscription")
	}
}

func TestWorkerSendsHeadersWildcardsAndBothSecretsDuringRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	type seen struct {
		tenant string
		ok     int
	}
	got := make(chan seen, 10)
	var secrets atomic.Pointer[[]string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		_, _ = io.ReadFull(r.Body, body)
		n := 0
		for _, s := range *secrets.Load() {
			if signature.Verify(s, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now(), time.Minute) == nil {
				n++
			}
		}
		got <- seen{tenant: r.Header.Get("X-Tenant"), ok: n}
	}))
	t.Cleanup(srv.Close)
	first, _ := signature.NewSecret()
	sub, err := b.subs.CreateSubscription(ctx, delivery.Subscription{ID: uuid.Must(uuid.NewV7()), URL: srv.URL,
		EventTypes: []string{"order.*"}, Secret: first, Headers: map[string]string{"X-Tenant": "t1"}})
	require.NoError(t, err)
	second, _ := signature.NewSecret()
	_, err = b.subs.RotateSecret(ctx, sub.ID, second, time.Now().Add(time.Hour))
	require.NoError(t, err)
	secrets.Store(&[]string{first, second})
	b.startWorker(t, worker.Config{})
	b.publishType(t, "order.paid", "k", 1) // matched by order.*
	select {
	case s := <-got:
		require.Equal(t, "t1", s.tenant)
		require.Equal(t, 2, s.ok, "signed with the old and the new secret")
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery")
	}
}

func TestWorkerAppliesFiltersAndRetryPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	big := newEndpoint(t, func(int64) (int, time.Duration) { return 200, 0 })
	flaky := newEndpoint(t, func(int64) (int, time.Duration) { return 500, 0 })
	expr := `data.n > 1`
	secret, _ := signature.NewSecret()
	fs, err := b.subs.CreateSubscription(ctx, delivery.Subscription{ID: uuid.Must(uuid.NewV7()), URL: big.srv.URL,
		EventTypes: []string{"order.created"}, Secret: secret, Filter: &expr})
	require.NoError(t, err)
	two := 2
	_, err = b.subs.CreateSubscription(ctx, delivery.Subscription{ID: uuid.Must(uuid.NewV7()), URL: flaky.srv.URL,
		EventTypes: []string{"order.created"}, Secret: secret, RetryPolicy: &delivery.RetryPolicy{MaxAttempts: &two}})
	require.NoError(t, err)
	b.startWorker(t, worker.Config{MaxAttempts: 10})

	small := b.publish(t, "a", 1) // data {"n":1}: filtered out
	ev, _, err := b.events.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "b", Data: json.RawMessage(`{"n":5}`)})
	require.NoError(t, err)
	b.produce(t, ev, 1)
	big.await(t, 1, 20*time.Second)
	big.mu.Lock()
	require.Equal(t, 1, big.ok[ev.ID.String()])
	require.Zero(t, big.ok[small.ID.String()])
	big.mu.Unlock()
	ds, _, err := b.subs.ListDeliveries(ctx, delivery.Filter{EventID: &small.ID, SubscriptionID: &fs.ID})
	require.NoError(t, err)
	require.Empty(t, ds, "no delivery is created when the filter says no")

	require.Eventually(t, func() bool {
		ds, _, _ := b.subs.ListDeliveries(ctx, delivery.Filter{EventID: &ev.ID, Status: ptr(delivery.StatusDead)})
		return len(ds) == 1 && ds[0].Attempts == 2
	}, 20*time.Second, 10*time.Millisecond, "dead after the subscription's 2 attempts, not the worker's 10")
}

func ptr[T any](v T) *T { return &v }

func TestWorkerDisablesOn410AndHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	gone := newEndpoint(t, func(int64) (int, time.Duration) { return http.StatusGone, 0 })
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	gs := b.subscribe(t, gone.srv.URL)
	bs := b.subscribe(t, busy.URL)
	b.startWorker(t, worker.Config{RetrySchedule: []time.Duration{20 * time.Millisecond}, MaxAttempts: 8})
	ev := b.publish(t, "k", 1)

	require.Eventually(t, func() bool {
		s, err := b.subs.GetSubscription(ctx, gs.ID)
		return err == nil && s.State == delivery.StateDisabled
	}, 20*time.Second, 10*time.Millisecond, "410 disables the subscription")
	s, err := b.subs.GetSubscription(ctx, gs.ID)
	require.NoError(t, err)
	require.Equal(t, "endpoint answered 410 Gone", *s.DisabledReason)

	var d delivery.Delivery
	require.Eventually(t, func() bool {
		ds, _, _ := b.subs.ListDeliveries(ctx, delivery.Filter{EventID: &ev.ID, SubscriptionID: &bs.ID})
		if len(ds) == 1 && len(ds[0].AttemptLog) == 1 {
			d = ds[0]
			return true
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
	wait := d.NextAttemptAt.Sub(d.AttemptLog[0].StartedAt)
	require.GreaterOrEqual(t, wait, 2900*time.Millisecond, "Retry-After: 3 beats the 20ms backoff")

	time.Sleep(300 * time.Millisecond) // several poll rounds: the disabled subscription is not retried
	require.Equal(t, int64(1), gone.n.Load())
}
