package worker

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

// job is one attempt to make.
type job struct {
	deliveryID     uuid.UUID
	subscriptionID uuid.UUID
	eventID        uuid.UUID
	url            string
	keys           [][]byte             // v1 keys: current, then previous during a rotation
	edKeys         []ed25519.PrivateKey // v1a keys, likewise
	keyErr         error                // the subscription's keys do not decode: nothing is sent
	headers        map[string]string
	timeout        time.Duration
	body           []byte
	orderKey       string // the event key, or its id when it has none: picks the lane
	// seqKey and seq place the delivery among its key's (nil: the event has no
	// key); ordered subscriptions wait for the earlier ones.
	seqKey    *string
	seq       int64
	ordered   bool
	attempts  int // attempts made before this one
	createdAt time.Time
	// The subscription's retry policy (0 or nil: the worker's) and limits.
	maxAttempts int
	maxAge      time.Duration
	schedule    []time.Duration
	concurrency int // most attempts in flight (0: Config.Lanes)
	rateLimit   int // most requests per second (0: unlimited)
}

// jobColumns receives the job columns that create_deliveries and claim_due
// both return, in this order.
type jobColumns struct {
	j                    job
	secret               string
	previous, signingKey *string
	previousSigningKey   *string
	seq                  *int64 // NULL for an event without a key
	schemes              []string
	timeoutMS            *int
	maxAttempts, maxAge  *int
	schedule             []int32
	concurrency, rate    *int
	ordering             string
}

func (c *jobColumns) targets() []any {
	return []any{&c.j.deliveryID, &c.j.subscriptionID, &c.j.eventID, &c.j.attempts, &c.j.createdAt, &c.j.seqKey, &c.seq,
		&c.j.url, &c.secret, &c.previous, &c.signingKey, &c.previousSigningKey, &c.schemes, &c.j.headers, &c.timeoutMS,
		&c.maxAttempts, &c.maxAge, &c.schedule, &c.concurrency, &c.rate, &c.ordering}
}

// job builds the job from the scanned columns and resets c for the next row.
func (c *jobColumns) job() job {
	j := c.j
	if c.seq != nil {
		j.seq = *c.seq
	}
	sg := delivery.Signing{Secret: c.secret, PreviousSecret: c.previous, SigningKey: c.signingKey,
		PreviousSigningKey: c.previousSigningKey, Schemes: c.schemes}
	j.keys, j.edKeys, j.keyErr = sg.Keys()
	if c.timeoutMS != nil {
		j.timeout = time.Duration(*c.timeoutMS) * time.Millisecond
	}
	if c.maxAttempts != nil {
		j.maxAttempts = *c.maxAttempts
	}
	if c.maxAge != nil {
		j.maxAge = time.Duration(*c.maxAge) * time.Second
	}
	for _, s := range c.schedule {
		j.schedule = append(j.schedule, time.Duration(s)*time.Second)
	}
	if j.maxAttempts == 0 && len(j.schedule) > 0 {
		j.maxAttempts = len(j.schedule) + 1 // one attempt per step, and the first
	}
	if c.concurrency != nil {
		j.concurrency = *c.concurrency
	}
	if c.rate != nil {
		j.rateLimit = *c.rate
	}
	j.ordered = c.ordering == delivery.Ordered
	*c = jobColumns{}
	return j
}

// dispatcher runs, per subscription, Config.Lanes goroutines each draining a
// bounded queue. A slow or failing subscriber fills only its own lanes; the
// consumer never waits for it (a full lane sends the delivery to the poller).
type dispatcher struct {
	ctx   context.Context
	w     *Worker
	id    uuid.UUID
	cl    *kgo.Client
	log   *slog.Logger
	wg    sync.WaitGroup
	soft  atomic.Bool // stopping: queued jobs are handed back, not sent
	mu    sync.Mutex
	done  bool
	lanes map[uuid.UUID][]chan job
	// lastOffer is when each subscription's lanes last got a delivery: lanes
	// idle for Config.LaneIdle are closed (reap), so subscriptions that were
	// deleted or went quiet do not keep goroutines.
	lastOffer map[uuid.UUID]time.Time

	// stopping ends waits for a subscription's limits on a soft stop.
	stopping  context.Context
	stopWaits context.CancelFunc
	limMu     sync.Mutex
	limits    map[uuid.UUID]*subLimits
	breakers  map[string]*breaker // by endpoint URL
	breakerMu sync.Mutex

	// Outcomes go to one recorder goroutine that group-commits them (record.go).
	records      chan recordReq
	stopRecorder chan struct{}
	recorderDone chan struct{}

	relMu    sync.Mutex
	released []uuid.UUID

	// Outcomes and hand-backs that PostgreSQL refused for now. The rows stay held
	// by this live worker, so no other worker would take them: the poller
	// retries these until they land.
	laterMu    sync.Mutex
	unrecorded []outcome
	unreleased []uuid.UUID
}

// outcome is one attempt's result, to be written to the delivery log.
type outcome struct {
	j       job
	status  string
	n       int
	next    time.Time
	lastErr *string
	started time.Time
	latency time.Duration
	code    *int
	body    *string
	ok      bool
}

func newDispatcher(ctx context.Context, w *Worker, id uuid.UUID, cl *kgo.Client, log *slog.Logger) *dispatcher {
	stopping, stopWaits := context.WithCancel(ctx)
	d := &dispatcher{ctx: ctx, w: w, id: id, cl: cl, log: log, lanes: map[uuid.UUID][]chan job{}, lastOffer: map[uuid.UUID]time.Time{},
		stopping: stopping, stopWaits: stopWaits, limits: map[uuid.UUID]*subLimits{}, breakers: map[string]*breaker{},
		records: make(chan recordReq), stopRecorder: make(chan struct{}), recorderDone: make(chan struct{})}
	go d.runRecorders()
	return d
}

// offer queues j on its lane without blocking; false means the lane is full (or
// the dispatcher stopped) and the caller must release the delivery.
func (d *dispatcher) offer(j job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return false
	}
	lanes, ok := d.lanes[j.subscriptionID]
	if !ok {
		lanes = make([]chan job, d.w.cfg.Lanes)
		for i := range lanes {
			lanes[i] = make(chan job, d.w.cfg.LaneQueue)
			d.wg.Add(1)
			go d.runLane(lanes[i])
		}
		d.lanes[j.subscriptionID] = lanes
	}
	d.lastOffer[j.subscriptionID] = time.Now()
	h := fnv.New32a()
	h.Write([]byte(j.orderKey))
	select {
	case lanes[h.Sum32()%uint32(len(lanes))] <- j:
		return true
	default:
		return false
	}
}

// reap closes the lanes of subscriptions that got no delivery for idle and
// have nothing queued, and forgets their limits and idle breakers. A lane busy
// with an attempt finishes it first; the next delivery opens new lanes.
func (d *dispatcher) reap(now time.Time, idle time.Duration) int {
	var reaped []uuid.UUID
	d.mu.Lock()
	if !d.done {
	subs:
		for sub, lanes := range d.lanes {
			if now.Sub(d.lastOffer[sub]) < idle {
				continue
			}
			for _, ch := range lanes {
				if len(ch) > 0 {
					continue subs
				}
			}
			for _, ch := range lanes {
				close(ch)
			}
			delete(d.lanes, sub)
			delete(d.lastOffer, sub)
			reaped = append(reaped, sub)
		}
	}
	d.mu.Unlock()
	d.limMu.Lock()
	for _, sub := range reaped {
		delete(d.limits, sub)
	}
	d.limMu.Unlock()
	d.breakerMu.Lock()
	for url, b := range d.breakers {
		if b.cb.State() == gobreaker.StateClosed && now.Sub(time.Unix(0, b.lastUsed.Load())) >= idle {
			delete(d.breakers, url)
		}
	}
	d.breakerMu.Unlock()
	return len(reaped)
}

func (d *dispatcher) runLane(ch chan job) {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case j, ok := <-ch:
			if !ok {
				return
			}
			if d.soft.Load() {
				d.relMu.Lock()
				d.released = append(d.released, j.deliveryID)
				d.relMu.Unlock()
				continue
			}
			d.attempt(j)
		}
	}
}

// stop ends the lanes. On a soft stop each lane finishes its attempt in hand and
// queued deliveries are handed back; on a hard stop (ctx) lanes just exit.
func (d *dispatcher) stop() {
	d.soft.Store(true)
	d.stopWaits()
	d.mu.Lock()
	d.done = true
	for _, lanes := range d.lanes {
		for _, ch := range lanes {
			close(ch)
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
	defer func() { close(d.stopRecorder); <-d.recorderDone }()
	if d.ctx.Err() != nil {
		return
	}
	// What still fails now is freed when this worker unregisters (or its
	// heartbeat goes stale): the claim query treats a missing owner as dead.
	d.retryLater(d.ctx)
	d.release(d.ctx, d.released)
}

// attempt sends j once and records the outcome. First it waits for what may
// hold the attempt back: earlier deliveries of its key (ordered subscriptions),
// the subscription's concurrency and rate limits, and its endpoint's breaker.
func (d *dispatcher) attempt(j job) {
	w := d.w
	log := d.log.With("delivery_id", j.deliveryID, "event_id", j.eventID, "subscription_id", j.subscriptionID)
	if j.ordered && j.seqKey != nil {
		var blocked bool
		err := w.pool.QueryRow(d.ctx, q.EarlierPending, j.subscriptionID, *j.seqKey, j.seq).Scan(&blocked)
		if err != nil || blocked {
			// The poller claims it once the earlier ones are done (or, after an
			// error, checks again).
			d.release(d.ctx, []uuid.UUID{j.deliveryID})
			return
		}
	}
	lim := d.limitsFor(j)
	if !lim.acquire(d.stopping) {
		d.release(d.ctx, []uuid.UUID{j.deliveryID}) // soft stop while waiting
		return
	}
	defer lim.release()
	if err := lim.wait(d.stopping); err != nil {
		d.release(d.ctx, []uuid.UUID{j.deliveryID})
		return
	}
	report := func(error) {}
	if br := d.breakerFor(j.url); br != nil {
		done, err := br.cb.Allow()
		if err != nil {
			d.postpone(j, br.retryAt(err), "circuit breaker open: the endpoint failed "+strconv.Itoa(w.cfg.BreakerFailures)+" times in a row")
			return
		}
		report = done
	}

	started := time.Now()
	var res sender.Result
	if j.keyErr != nil {
		res = sender.Result{Err: fmt.Errorf("subscription signing keys are unusable: %w", j.keyErr)}
	} else {
		res = w.sender.Send(d.ctx, sender.Request{URL: j.url, ID: j.eventID.String(), Body: j.body, Keys: j.keys,
			SigningKeys: j.edKeys, Headers: j.headers, Timeout: j.timeout})
	}
	if d.ctx.Err() != nil {
		report(errStopped)
		return // hard stop mid-attempt: record nothing, as after a crash
	}
	if breakerFailure(res) {
		report(res.Err)
	} else {
		report(nil)
	}
	w.metrics.attemptDuration.Observe(res.Latency.Seconds())

	n := j.attempts + 1
	status, next := delivery.StatusSucceeded, time.Now()
	var lastErr *string
	if res.Succeeded() {
		w.metrics.attempts.WithLabelValues("success").Inc()
	} else {
		w.metrics.attempts.WithLabelValues("failure").Inc()
		msg := res.Err.Error()
		lastErr = &msg
		maxAttempts := w.cfg.MaxAttempts
		if j.maxAttempts > 0 {
			maxAttempts = j.maxAttempts
		}
		wait := w.cfg.RetryDelay(n, j.schedule)
		if res.RetryAfter > wait { // 429/503 asked for longer: honour it, within RetryMax
			wait = min(res.RetryAfter, w.cfg.RetryMax)
		}
		next = time.Now().Add(wait)
		if res.StatusCode == http.StatusGone {
			// 410: the endpoint is gone for good. Disable the subscription at
			// once; this delivery stays pending and goes out if it is re-enabled.
			d.disable(j.subscriptionID, true, "endpoint answered 410 Gone")
		}
		// A destination the egress guard refuses (private, loopback, metadata...)
		// will not become reachable by retrying: the delivery is dead at once.
		blocked := errors.Is(res.Err, egress.ErrBlocked)
		if blocked || n >= maxAttempts || (j.maxAge > 0 && next.After(j.createdAt.Add(j.maxAge))) {
			status = delivery.StatusDead
			if d.deadLetter(j, n, msg) {
				w.metrics.dead.Inc()
				log.Warn("delivery is dead", "attempts", n, "error", msg)
			} else {
				// Not dead until its record is in the dead-letter topic: keep it
				// pending, so a later round tries (and dead-letters) it again.
				status = delivery.StatusPending
				next = time.Now().Add(w.cfg.RetryDelay(1, nil))
			}
		} else {
			status = delivery.StatusPending
			log.Debug("attempt failed; retry scheduled", "attempt", n, "error", msg, "next_attempt_at", next)
		}
	}
	var code *int
	if res.StatusCode != 0 {
		code = &res.StatusCode
	}
	var body *string
	if res.ResponseBody != "" {
		body = &res.ResponseBody
	}
	o := outcome{j: j, status: status, n: n, next: next, lastErr: lastErr, started: started,
		latency: res.Latency, code: code, body: body, ok: res.Succeeded()}
	failingSince, err := d.record(o)
	if err != nil && d.ctx.Err() == nil {
		log.Error("could not record attempt; the poller retries it", "error", err)
		d.laterMu.Lock()
		d.unrecorded = append(d.unrecorded, o)
		d.laterMu.Unlock()
	}
	if failingSince != nil && w.cfg.DisableAfter > 0 && time.Since(*failingSince) >= w.cfg.DisableAfter {
		d.disable(j.subscriptionID, false, "every attempt has failed since "+failingSince.UTC().Format(time.RFC3339))
	}
}

// postpone hands j back without an attempt, due again at at.
func (d *dispatcher) postpone(j job, at time.Time, reason string) {
	d.w.metrics.postponed.Inc()
	if _, err := d.w.pool.Exec(d.ctx, q.Postpone, j.deliveryID, d.id, at, reason); err != nil {
		if d.ctx.Err() == nil {
			d.log.Warn("could not postpone delivery; the poller retries", "delivery_id", j.deliveryID, "error", err)
		}
		d.laterMu.Lock()
		d.unreleased = append(d.unreleased, j.deliveryID)
		d.laterMu.Unlock()
	}
}

// release hands deliveries back to every worker's poller, or keeps them for the
// next try when PostgreSQL refuses.
func (d *dispatcher) release(ctx context.Context, ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	if _, err := d.w.pool.Exec(ctx, q.Release, ids, d.id); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("could not hand deliveries back; the poller retries", "error", err)
		}
		d.laterMu.Lock()
		d.unreleased = append(d.unreleased, ids...)
		d.laterMu.Unlock()
	}
}

// retryLater writes what PostgreSQL refused before; the poller calls it.
func (d *dispatcher) retryLater(ctx context.Context) {
	d.laterMu.Lock()
	outcomes, ids := d.unrecorded, d.unreleased
	d.unrecorded, d.unreleased = nil, nil
	d.laterMu.Unlock()
	for i, o := range outcomes {
		if _, err := d.record(o); err != nil {
			d.laterMu.Lock()
			d.unrecorded = append(d.unrecorded, outcomes[i:]...)
			d.laterMu.Unlock()
			break
		}
	}
	d.release(ctx, ids)
}

// deadLetter produces j to the dead-letter topic, waiting for the acknowledgement.
func (d *dispatcher) deadLetter(j job, attempts int, reason string) bool {
	rec := &kgo.Record{
		Topic: d.w.kcfg.DLQTopic,
		Key:   []byte(j.orderKey),
		Value: j.body,
		Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderEventID, Value: []byte(j.eventID.String())},
			{Key: kafka.HeaderDLQSubscription, Value: []byte(j.subscriptionID.String())},
			{Key: kafka.HeaderDLQDelivery, Value: []byte(j.deliveryID.String())},
			{Key: kafka.HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
			{Key: kafka.HeaderDLQReason, Value: []byte(reason)},
		},
	}
	if err := d.cl.ProduceSync(d.ctx, rec).FirstErr(); err != nil {
		if d.ctx.Err() == nil {
			d.log.Error("dead-letter produce failed; delivery stays pending", "delivery_id", j.deliveryID, "error", err)
		}
		return false
	}
	return true
}

// disable turns a subscription off with a reason: at once (410 Gone), or, when
// now is false, only if it is still failing since before DisableAfter. Its
// pending deliveries wait for a re-enable. The audit entry and the event
// ecs.subscription.disabled are written in the same transaction, so operators
// subscribed to that event hear of every automatic disable exactly once.
func (d *dispatcher) disable(id uuid.UUID, now bool, reason string) {
	w := d.w
	var disabled bool
	err := pgx.BeginFunc(d.ctx, w.pool, func(tx pgx.Tx) error {
		var ev delivery.DisabledEvent
		err := tx.QueryRow(d.ctx, q.DisableSub, id, reason, now, time.Now().Add(-w.cfg.DisableAfter)).
			Scan(&ev.URL, &ev.FailingSince, &ev.DisabledAt)
		if db.IsNoRows(err) {
			return nil // already disabled, or it recovered meanwhile
		}
		if err != nil {
			return err
		}
		ev.SubscriptionID, ev.Reason = id, reason
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		after, _ := json.Marshal(map[string]any{"state": delivery.StateDisabled, "disabled_reason": reason})
		if _, err := tx.Exec(d.ctx, q.AuditDisable, id.String(), after); err != nil {
			return err
		}
		if _, _, err := w.events.Tx(tx).Publish(d.ctx, outbox.NewEvent{Type: delivery.EventSubscriptionDisabled, Key: id.String(), Data: data}); err != nil {
			return fmt.Errorf("emit %s: %w", delivery.EventSubscriptionDisabled, err)
		}
		disabled = true
		return nil
	})
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Error("could not disable subscription", "subscription_id", id, "error", err)
		}
		return
	}
	if disabled {
		w.events.WakeRelay(d.ctx) // the event committed with the disable
		w.metrics.disabled.Inc()
		d.log.Warn("subscription disabled", "subscription_id", id, "reason", reason)
	}
}
