package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/logging"
)

// subscribeWith creates a subscription to both test types with the settings
// mod sets.
func (b *testBundle) subscribeWith(t *testing.T, url string, mod func(*delivery.Subscription)) delivery.Subscription {
	t.Helper()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	sub := delivery.Subscription{ID: uuid.Must(uuid.NewV7()), URL: url, EventTypes: []string{"order.created", "order.paid"}, Secret: secret}
	if mod != nil {
		mod(&sub)
	}
	out, err := b.subs.CreateSubscription(context.Background(), sub)
	require.NoError(t, err)
	return out
}

// status is the status of an event's only delivery, "" while there is none:
// safe inside require.Eventually, whose condition runs on another goroutine.
func (b *testBundle) status(eventID uuid.UUID) string {
	ds, _, err := b.subs.ListDeliveries(context.Background(), delivery.Filter{EventID: &eventID})
	if err != nil || len(ds) != 1 {
		return ""
	}
	return ds[0].Status
}

// request is one request a recorder saw.
type request struct {
	id      string // webhook-id: the event id
	start   time.Time
	end     time.Time
	code    int
	headers http.Header
	body    []byte
}

// recorder is an endpoint that logs every request and answers with policy's
// status after its delay.
type recorder struct {
	srv      *httptest.Server
	mu       sync.Mutex
	log      []request
	inFlight atomic.Int64
	peak     atomic.Int64
}

func newRecorder(t *testing.T, policy func(id string, n int) (int, time.Duration)) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		for {
			p := r.peak.Load()
			if now <= p || r.peak.CompareAndSwap(p, now) {
				break
			}
		}
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get(signature.HeaderID)
		start := time.Now()
		r.mu.Lock()
		n := 0
		for _, q := range r.log {
			if q.id == id {
				n++
			}
		}
		r.mu.Unlock()
		code, delay := policy(id, n)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
				return
			}
		}
		r.mu.Lock()
		r.log = append(r.log, request{id: id, start: start, end: time.Now(), code: code, headers: req.Header.Clone(), body: body})
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// succeeded counts the distinct webhook-ids answered 2xx.
func (r *recorder) succeeded() int {
	seen := map[string]bool{}
	for _, q := range r.requests() {
		if q.code < 300 {
			seen[q.id] = true
		}
	}
	return len(seen)
}

func TestRetryDelayFollowsTheSchedule(t *testing.T) {
	t.Parallel()
	cfg := worker.Config{}.WithDefaults()
	require.Equal(t, 8, cfg.MaxAttempts, "one attempt per step, and the first")
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	for failed, w := range want {
		got := map[time.Duration]bool{}
		for range 50 {
			d := cfg.RetryDelay(failed+1, nil)
			require.GreaterOrEqual(t, d, w*8/10, "after %d failures", failed+1)
			require.LessOrEqual(t, d, w*12/10, "after %d failures", failed+1)
			got[d] = true
		}
		require.Greater(t, len(got), 1, "waits are jittered")
	}
	own := []time.Duration{time.Second, 3 * time.Second}
	require.InDelta(t, float64(3*time.Second), float64(cfg.RetryDelay(2, own)), float64(600*time.Millisecond))
	require.InDelta(t, float64(3*time.Second), float64(cfg.RetryDelay(9, own)), float64(600*time.Millisecond), "the last step repeats")
}

// TestSubscriptionScheduleIsHonoured: a subscription's own schedule sets the
// waits between its attempts and, without max_attempts, how many there are.
func TestSubscriptionScheduleIsHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newRecorder(t, func(string, int) (int, time.Duration) { return 500, 0 })
	b.subscribeWith(t, ep.srv.URL, func(s *delivery.Subscription) {
		s.RetryPolicy = &delivery.RetryPolicy{ScheduleSeconds: []int{1, 2}}
	})
	b.startWorker(t, worker.Config{})
	ev := b.publish(t, "k", 1)
	require.Eventually(t, func() bool { return b.status(ev.ID) == delivery.StatusDead }, 20*time.Second, 20*time.Millisecond)
	reqs := ep.requests()
	require.Len(t, reqs, 3, "two waits: three attempts")
	gap1, gap2 := reqs[1].start.Sub(reqs[0].end), reqs[2].start.Sub(reqs[1].end)
	t.Logf("waits: %v, %v (schedule 1s, 2s with ±20%% jitter)", gap1, gap2)
	require.GreaterOrEqual(t, gap1, 800*time.Millisecond)
	require.GreaterOrEqual(t, gap2, 1600*time.Millisecond)
	require.Less(t, gap2, 4*time.Second)
}

// TestBreakerStopsHammeringADownEndpoint: after BreakerFailures failures in a
// row no request reaches the endpoint until the cooldown ends; the deliveries
// held back wait in PostgreSQL without spending attempts; one probe per
// cooldown checks the endpoint, and once it answers, everything is delivered.
func TestBreakerStopsHammeringADownEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var healthy atomic.Bool
	ep := newRecorder(t, func(string, int) (int, time.Duration) {
		if healthy.Load() {
			return 204, 0
		}
		return 503, 0
	})
	one := 1
	b.subscribeWith(t, ep.srv.URL, func(s *delivery.Subscription) { s.MaxConcurrency = &one })
	b.startWorker(t, worker.Config{BreakerFailures: 3, BreakerCooldown: time.Second, MaxAttempts: 50,
		RetrySchedule: []time.Duration{50 * time.Millisecond}})
	var evs []outbox.Event
	for i := range 20 {
		evs = append(evs, b.publish(t, "k"+strconv.Itoa(i), 1))
	}
	require.Eventually(t, func() bool { return len(ep.requests()) >= 3 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(600 * time.Millisecond) // well inside the cooldown
	require.Equal(t, 3, len(ep.requests()), "the open breaker lets nothing through")
	postponed := 0
	for _, ev := range evs {
		if d := b.delivery(t, ev.ID); d.Attempts == 0 && d.LastError != nil {
			require.Contains(t, *d.LastError, "circuit breaker open")
			postponed++
		}
	}
	require.GreaterOrEqual(t, postponed, 10, "held-back deliveries spend no attempts")

	time.Sleep(1500 * time.Millisecond) // one cooldown: one failed probe
	probes := len(ep.requests()) - 3
	require.GreaterOrEqual(t, probes, 1)
	require.LessOrEqual(t, probes, 2, "one probe per cooldown")

	healthy.Store(true)
	require.Eventually(t, func() bool { return ep.succeeded() == 20 }, 20*time.Second, 20*time.Millisecond)
	for _, ev := range evs {
		require.Eventually(t, func() bool { return b.status(ev.ID) == delivery.StatusSucceeded }, 10*time.Second, 10*time.Millisecond)
	}
	t.Logf("%d requests for 20 deliveries to an endpoint that was down for ~2s", len(ep.requests()))
}

// TestConcurrencyAndRateLimits: max_concurrency caps the attempts in flight,
// and rate_limit spaces requests evenly.
func TestConcurrencyAndRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	capped := newRecorder(t, func(string, int) (int, time.Duration) { return 200, 50 * time.Millisecond })
	limited := newRecorder(t, func(string, int) (int, time.Duration) { return 200, 0 })
	two, ten := 2, 10
	b.subscribeWith(t, capped.srv.URL, func(s *delivery.Subscription) { s.MaxConcurrency = &two })
	b.subscribeWith(t, limited.srv.URL, func(s *delivery.Subscription) { s.RateLimit = &ten })
	b.startWorker(t, worker.Config{})
	for i := range 20 {
		b.publish(t, "k"+strconv.Itoa(i), 1) // 20 keys spread over the 16 lanes
	}
	require.Eventually(t, func() bool { return capped.succeeded() == 20 && limited.succeeded() == 20 }, 20*time.Second, 20*time.Millisecond)
	require.LessOrEqual(t, capped.peak.Load(), int64(2), "max_concurrency 2")
	reqs := limited.requests()
	slices.SortFunc(reqs, func(a, b request) int { return a.start.Compare(b.start) })
	// 20 requests at 10/s with a burst of one span 1.9s; arrival times carry
	// network jitter, so single gaps get slack.
	require.GreaterOrEqual(t, reqs[len(reqs)-1].start.Sub(reqs[0].start), 1700*time.Millisecond, "rate_limit 10/s")
	for i := 1; i < len(reqs); i++ {
		require.GreaterOrEqual(t, reqs[i].start.Sub(reqs[i-1].start), 40*time.Millisecond, "rate_limit 10/s spaces requests ~100ms apart")
	}
	t.Logf("peak in flight with max_concurrency 2: %d; 20 requests at rate_limit 10/s took %v", capped.peak.Load(), reqs[len(reqs)-1].start.Sub(reqs[0].start))
}

// TestOrderedSubscriptionWaitsForRetries: in ordered mode a key's later
// deliveries wait while an earlier one is retried, and go once it succeeds or
// dies; an unordered subscription beside it is not held back, and other keys
// never are.
func TestOrderedSubscriptionWaitsForRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var first, doomed atomic.Value // ids of k's first event and of d's first event
	first.Store("")
	doomed.Store("")
	policy := func(id string, n int) (int, time.Duration) {
		switch id {
		case first.Load():
			if n < 3 {
				return 500, 0 // fails three times, then succeeds
			}
		case doomed.Load():
			return 500, 0 // always fails: dies after max_attempts
		}
		return 200, 0
	}
	ordered := newRecorder(t, policy)
	unordered := newRecorder(t, policy)
	four := 4
	b.subscribeWith(t, ordered.srv.URL, func(s *delivery.Subscription) {
		s.Ordering = delivery.Ordered
		s.RetryPolicy = &delivery.RetryPolicy{MaxAttempts: &four}
	})
	b.subscribeWith(t, unordered.srv.URL, func(s *delivery.Subscription) {
		s.RetryPolicy = &delivery.RetryPolicy{MaxAttempts: &four}
	})
	// Retries every ~150ms; the poller looks every 50ms.
	b.startWorker(t, worker.Config{RetrySchedule: []time.Duration{150 * time.Millisecond}})

	k1 := b.store(t, "order.created", "k")
	first.Store(k1.ID.String())
	k2 := b.store(t, "order.paid", "k")
	k3 := b.store(t, "order.created", "k")
	d1 := b.store(t, "order.created", "d")
	doomed.Store(d1.ID.String())
	d2 := b.store(t, "order.created", "d")
	other := b.store(t, "order.created", "other")
	keyless := b.store(t, "order.created", "") // no key: never held, never holds
	require.Zero(t, keyless.KeySeq)
	for _, ev := range []outbox.Event{k1, k2, k3, d1, d2, other, keyless} {
		b.produce(t, ev, 1)
	}
	require.Eventually(t, func() bool { return ordered.succeeded() == 6 && unordered.succeeded() == 6 }, 20*time.Second, 20*time.Millisecond)

	// firstOK is when id was first answered 2xx; firstTry when it was first sent.
	when := func(reqs []request, id string, ok bool) time.Time {
		for _, q := range reqs {
			if q.id == id && (!ok || q.code < 300) {
				return q.start
			}
		}
		return time.Time{}
	}
	reqs := ordered.requests()
	okK1 := when(reqs, k1.ID.String(), true)
	require.False(t, okK1.IsZero())
	require.True(t, when(reqs, k2.ID.String(), false).After(okK1), "ordered: k2 waits for k1's retries")
	require.True(t, when(reqs, k3.ID.String(), false).After(when(reqs, k2.ID.String(), true)), "ordered: k3 after k2")
	require.Equal(t, delivery.StatusDead, b.delivery2(t, d1.ID, ordered.srv.URL).Status)
	require.True(t, when(reqs, d2.ID.String(), false).After(when(reqs, d1.ID.String(), false)), "ordered: d2 goes once d1 died")
	require.True(t, when(reqs, other.ID.String(), false).Before(okK1), "ordered: other keys are not held")

	// The same retries do not hold an unordered subscription back: this is what
	// the ordered assertions above would see without ordered mode.
	ureqs := unordered.requests()
	require.True(t, when(ureqs, k2.ID.String(), true).Before(when(ureqs, k1.ID.String(), true)), "unordered: k2 is not held")
}

// delivery2 returns the delivery of an event to the subscription with url.
func (b *testBundle) delivery2(t *testing.T, eventID uuid.UUID, url string) delivery.Delivery {
	t.Helper()
	ds, _, err := b.subs.ListDeliveries(context.Background(), delivery.Filter{EventID: &eventID})
	require.NoError(t, err)
	for _, d := range ds {
		sub, err := b.subs.GetSubscription(context.Background(), d.SubscriptionID)
		require.NoError(t, err)
		if sub.URL == url {
			return d
		}
	}
	t.Fatalf("no delivery of %s to %s", eventID, url)
	return delivery.Delivery{}
}

// TestDeadSubscriberIsDisabledAndAnnounced: a subscription whose every attempt
// fails for DisableAfter is disabled with a reason and an audit entry, and the
// platform emits ecs.subscription.disabled, which an operator's subscription
// receives through the ordinary pipeline (relay included). One that fails most
// attempts but not all stays active. Re-enabled, it resumes its deliveries.
func TestDeadSubscriberIsDisabledAndAnnounced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var healthy atomic.Bool
	dead := newRecorder(t, func(string, int) (int, time.Duration) {
		if healthy.Load() {
			return 200, 0
		}
		return 500, 0
	})
	var flakyN atomic.Int64
	flaky := newRecorder(t, func(string, int) (int, time.Duration) {
		if flakyN.Add(1)%4 == 0 {
			return 200, 0
		}
		return 500, 0
	})
	ops := newRecorder(t, func(string, int) (int, time.Duration) { return 200, 0 })
	deadSub := b.subscribe(t, dead.srv.URL)
	flakySub := b.subscribe(t, flaky.srv.URL)

	b.startWorker(t, worker.Config{DisableAfter: 1500 * time.Millisecond, BreakerCooldown: 100 * time.Millisecond,
		RetrySchedule: []time.Duration{100 * time.Millisecond}, MaxAttempts: 100})
	b.subscribeWith(t, ops.srv.URL, func(s *delivery.Subscription) { s.EventTypes = []string{delivery.EventSubscriptionDisabled} })
	r, err := relay.New(relay.Config{PollInterval: 100 * time.Millisecond}, b.kcfg, b.pool, logging.Discard(), nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { r.Stop(ctx) })

	var evs []outbox.Event
	for i := range 5 {
		evs = append(evs, b.publish(t, "k"+strconv.Itoa(i), 1))
	}
	require.Eventually(t, func() bool {
		s, err := b.subs.GetSubscription(ctx, deadSub.ID)
		return err == nil && s.State == delivery.StateDisabled
	}, 20*time.Second, 20*time.Millisecond)
	s, err := b.subs.GetSubscription(ctx, deadSub.ID)
	require.NoError(t, err)
	require.Contains(t, *s.DisabledReason, "every attempt has failed since")
	require.NotNil(t, s.DisabledAt)
	require.NotNil(t, s.FailingSince)
	require.GreaterOrEqual(t, s.DisabledAt.Sub(*s.FailingSince), 1500*time.Millisecond)
	var actor string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT actor FROM audit_log WHERE resource_id = $1 AND action = 'subscription.disable'`,
		deadSub.ID.String()).Scan(&actor))
	require.Equal(t, "system:worker", actor)

	// The operator hears of it once, with the details.
	require.Eventually(t, func() bool { return ops.succeeded() == 1 }, 20*time.Second, 20*time.Millisecond)
	var body struct {
		Type string                 `json:"type"`
		Data delivery.DisabledEvent `json:"data"`
	}
	require.NoError(t, json.Unmarshal(ops.requests()[0].body, &body))
	require.Equal(t, delivery.EventSubscriptionDisabled, body.Type)
	require.Equal(t, deadSub.ID, body.Data.SubscriptionID)
	require.Equal(t, dead.srv.URL, body.Data.URL)
	require.Contains(t, body.Data.Reason, "every attempt has failed")

	fs, err := b.subs.GetSubscription(ctx, flakySub.ID)
	require.NoError(t, err)
	require.Equal(t, delivery.StateActive, fs.State, "a subscriber that sometimes succeeds is not disabled")

	// Disabled, it gets no attempts; re-enabled, it resumes where it stopped.
	before := len(dead.requests())
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, before, len(dead.requests()), "no attempts while disabled")
	healthy.Store(true)
	s.State, s.DisabledReason = delivery.StateActive, nil
	on, err := b.subs.UpdateSubscription(ctx, s, s.Version)
	require.NoError(t, err)
	require.Nil(t, on.FailingSince, "re-enabling forgets the failures")
	require.Nil(t, on.DisabledAt)
	require.Eventually(t, func() bool { return dead.succeeded() == 5 }, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, ops.succeeded(), "announced once")
}

// TestV1aSignaturesEndToEnd: a subscription with both schemes gets a v1 and a
// v1a signature on every webhook; the v1a one verifies with the public key the
// subscription publishes.
func TestV1aSignaturesEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newRecorder(t, func(string, int) (int, time.Duration) { return 200, 0 })
	sub := b.subscribeWith(t, ep.srv.URL, func(s *delivery.Subscription) {
		s.SignatureSchemes = []string{signature.SchemeV1, signature.SchemeV1a}
	})
	require.NotEmpty(t, sub.PublicKey)
	b.startWorker(t, worker.Config{})
	b.publish(t, "k", 1)
	require.Eventually(t, func() bool { return ep.succeeded() == 1 }, 20*time.Second, 20*time.Millisecond)
	q := ep.requests()[0]
	sigs := q.headers.Get(signature.HeaderSignature)
	require.Len(t, strings.Fields(sigs), 2, sigs)
	ts, id := q.headers.Get(signature.HeaderTimestamp), q.headers.Get(signature.HeaderID)
	require.NoError(t, signature.Verify(sub.Secret, id, ts, sigs, q.body, time.Now(), time.Minute))
	require.NoError(t, signature.VerifyV1a(sub.PublicKey, id, ts, sigs, q.body, time.Now(), time.Minute))
}

// TestBlockedDestinationIsDeadAtOnce: an endpoint the egress guard refuses
// (here loopback, with no allow-list) gets no request, and its delivery is dead
// after one attempt instead of retrying for a day and a half.
func TestBlockedDestinationIsDeadAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := newRecorder(t, func(string, int) (int, time.Duration) { return 200, 0 })
	b.subscribe(t, ep.srv.URL)
	b.startWorker(t, worker.Config{HTTP: sender.Config{Timeout: 5 * time.Second, Egress: egress.Config{AllowNetworks: []netip.Prefix{}}}})
	ev := b.publish(t, "k", 1)
	require.Eventually(t, func() bool { return b.status(ev.ID) == delivery.StatusDead }, 20*time.Second, 20*time.Millisecond)
	d := b.delivery(t, ev.ID)
	require.Equal(t, 1, d.Attempts)
	require.Contains(t, *d.LastError, "not a permitted destination")
	require.Empty(t, ep.requests())
}

// TestDisableAndItsEventCommitTogether: the disable, its audit entry and its
// ecs.subscription.disabled event are one transaction. While the audit write
// fails, the subscription stays active and no event is emitted; once it
// succeeds, both happen, once.
func TestDisableAndItsEventCommitTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `
		CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected: audit refused'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit();`)
	require.NoError(t, err)
	gone := newRecorder(t, func(string, int) (int, time.Duration) { return http.StatusGone, 0 })
	sub := b.subscribe(t, gone.srv.URL)
	b.startWorker(t, worker.Config{})
	b.publish(t, "k", 1)
	require.Eventually(t, func() bool { return len(gone.requests()) >= 1 }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	countEvents := func() int {
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = $1`, delivery.EventSubscriptionDisabled).Scan(&n))
		return n
	}
	s, err := b.subs.GetSubscription(ctx, sub.ID)
	require.NoError(t, err)
	require.Equal(t, delivery.StateActive, s.State, "the disable rolled back with its audit entry")
	require.Zero(t, countEvents(), "and so did its event")

	_, err = b.pool.Exec(ctx, `DROP TRIGGER refuse ON audit_log`)
	require.NoError(t, err)
	b.publish(t, "k2", 1) // another 410 disables it now
	require.Eventually(t, func() bool {
		s, err := b.subs.GetSubscription(ctx, sub.ID)
		return err == nil && s.State == delivery.StateDisabled
	}, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, countEvents())
}
