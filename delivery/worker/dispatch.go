package worker

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

// job is one attempt to make.
type job struct {
	deliveryID     uuid.UUID
	subscriptionID uuid.UUID
	eventID        uuid.UUID
	url            string
	keys           [][]byte // signing keys: current, then previous during a rotation; nil if unusable
	headers        map[string]string
	timeout        time.Duration
	body           []byte
	orderKey       string
	attempts       int // attempts made before this one
	createdAt      time.Time
	// maxAttempts and maxAge are the subscription's retry policy (0: the
	// worker's default attempts; no age limit).
	maxAttempts int
	maxAge      time.Duration
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
	return &dispatcher{ctx: ctx, w: w, id: id, cl: cl, log: log, lanes: map[uuid.UUID][]chan job{}}
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
	h := fnv.New32a()
	h.Write([]byte(j.orderKey))
	select {
	case lanes[h.Sum32()%uint32(len(lanes))] <- j:
		return true
	default:
		return false
	}
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
	d.mu.Lock()
	d.done = true
	for _, lanes := range d.lanes {
		for _, ch := range lanes {
			close(ch)
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
	if d.ctx.Err() != nil {
		return
	}
	// What still fails now is freed when this worker unregisters (or its
	// heartbeat goes stale): the claim query treats a missing owner as dead.
	d.retryLater(d.ctx)
	d.release(d.ctx, d.released)
}

// attempt sends j once and records the outcome.
func (d *dispatcher) attempt(j job) {
	w := d.w
	log := d.log.With("delivery_id", j.deliveryID, "event_id", j.eventID, "subscription_id", j.subscriptionID)
	started := time.Now()
	var res sender.Result
	if j.keys == nil {
		res = sender.Result{Err: errors.New("subscription secret is unusable")}
	} else {
		res = w.sender.Send(d.ctx, sender.Request{URL: j.url, ID: j.eventID.String(), Body: j.body, Keys: j.keys,
			Headers: j.headers, Timeout: j.timeout})
	}
	if d.ctx.Err() != nil {
		return // hard stop mid-attempt: record nothing, as after a crash
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
		wait := w.cfg.RetryDelay(n)
		if res.RetryAfter > wait { // 429/503 asked for longer: honour it, within RetryMax
			wait = min(res.RetryAfter, w.cfg.RetryMax)
		}
		next = time.Now().Add(wait)
		if res.StatusCode == http.StatusGone {
			// 410: the endpoint is gone for good. Disable the subscription at
			// once; this delivery stays pending and goes out if it is re-enabled.
			d.disable(j.subscriptionID, "endpoint answered 410 Gone")
		}
		if n >= maxAttempts || (j.maxAge > 0 && next.After(j.createdAt.Add(j.maxAge))) {
			status = delivery.StatusDead
			if d.deadLetter(j, n, msg) {
				w.metrics.dead.Inc()
				log.Warn("delivery is dead", "attempts", n, "error", msg)
			} else {
				// Not dead until its record is in the dead-letter topic: keep it
				// pending, so a later round tries (and dead-letters) it again.
				status = delivery.StatusPending
				next = time.Now().Add(w.cfg.RetryInitial)
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
	if err := d.record(o); err != nil && d.ctx.Err() == nil {
		log.Error("could not record attempt; the poller retries it", "error", err)
		d.laterMu.Lock()
		d.unrecorded = append(d.unrecorded, o)
		d.laterMu.Unlock()
	}
}

// record writes the attempt and the delivery's new state together. An
// unrecorded success would be sent again, so failures are kept and retried.
func (d *dispatcher) record(o outcome) error {
	var updated int64
	err := d.w.pool.QueryRow(d.ctx, q.FinishAttempt, o.j.deliveryID, o.status, o.n, o.next, o.lastErr, d.id,
		o.started, o.latency.Microseconds(), o.code, o.body, o.ok).Scan(&updated)
	if err == nil && updated == 0 {
		d.log.Warn("delivery was taken over by another worker before its attempt was recorded", "delivery_id", o.j.deliveryID)
	}
	return err
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
		if err := d.record(o); err != nil {
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

// setPolicy takes the subscription's retry policy.
func (j *job) setPolicy(createdAt time.Time, maxAttempts, maxAgeSeconds *int) {
	j.createdAt = createdAt
	if maxAttempts != nil {
		j.maxAttempts = *maxAttempts
	}
	if maxAgeSeconds != nil {
		j.maxAge = time.Duration(*maxAgeSeconds) * time.Second
	}
}

// setSubscription takes what a job needs of its subscription.
func (j *job) setSubscription(secret string, previous *string, headers map[string]string, timeoutMS *int) error {
	key, err := signature.Key(secret)
	if err != nil {
		return err
	}
	j.keys = [][]byte{key}
	if previous != nil {
		if old, err := signature.Key(*previous); err == nil {
			j.keys = append(j.keys, old)
		}
	}
	j.headers = headers
	if timeoutMS != nil {
		j.timeout = time.Duration(*timeoutMS) * time.Millisecond
	}
	return nil
}

// disable turns a subscription off with a reason; its deliveries wait.
func (d *dispatcher) disable(id uuid.UUID, reason string) {
	if _, err := d.w.pool.Exec(d.ctx, q.DisableSub, id, reason); err != nil {
		d.log.Error("could not disable subscription", "subscription_id", id, "error", err)
		return
	}
	d.log.Warn("subscription disabled", "subscription_id", id, "reason", reason)
}
