package scenario

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

const e2eMethod = `All three roles run. One event type, one subscription to the load
generator's receiver. (a) Latency: events are sent one per POST /v1/events at a
fixed 1,000 events/s for %s (an open loop: sends follow a schedule, not the
answers); for each event the time from reading its 202 to the webhook's
arrival at the receiver (both clocks in the load generator), split where a
consumer in the load generator first read the event's record from Kafka. (b) Highest
sustained rate: offered rates rise step by step (%s events/s, %s per step),
sent as paced POST /v1/events:batch calls of 100 events. A step is sustained
when the API accepted ≥ 95 %% of the offered events and the backlog (accepted
minus delivered) grew by no more than 5 %% of the events sent over the last two
thirds of the step, plus two batches; the figure is the delivered rate in that part of the
highest sustained step. Between steps the backlog drains. Ceiling: a bare
net/http client with 64 connections POSTing webhook-sized signed requests to
the same receiver, closed loop: the most webhooks this machine can carry to
it.`

// e2eSteps are the offered rates of the sustained-rate search.
func (e *Env) e2eSteps() []int {
	if e.Cfg.Quick {
		return []int{1000, 2500, 5000}
	}
	return []int{1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000}
}

func endToEnd(ctx context.Context, e *Env, sc *report.Scenario) error {
	steps := e.e2eSteps()
	stepLen := max(2*time.Second, 2*e.Cfg.Window/3)
	sc.Method = fmt.Sprintf(e2eMethod, e.Cfg.Window, joinInts(steps), stepLen)
	ceiling, err := e.httpCeiling(ctx)
	if err != nil {
		return err
	}
	const typ = "bench.e2e"
	if _, err := e.eventType(ctx, typ); err != nil {
		return err
	}
	if _, err := e.Client().Subscribe(ctx, e.Recv.URL("/e2e"), typ); err != nil {
		return err
	}
	cl := e.Client()
	var seq atomic.Int64
	tap, err := startTap(e.Rig.Brokers, e.Rig.TopicPrefix+typ)
	if err != nil {
		return err
	}
	defer tap.close()
	// Warm up: the first event creates the topic and the worker picks it up.
	warmN := 20
	base := e.Recv.Unique()
	for range warmN {
		if _, _, err := publishOne(ctx, cl, typ, "s4", seq.Add(1)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if !waitFor(ctx, e, base+int64(warmN), 60*time.Second) {
		return fmt.Errorf("warm-up: %d of %d webhooks arrived in 60s", e.Recv.Unique()-base, warmN)
	}

	// (a) Latency at a fixed 1,000 events/s.
	type sent struct {
		id string
		at time.Time
	}
	var (
		mu      sync.Mutex
		sent202 []sent
	)
	op := func(ctx context.Context, w int) (int, error) {
		id, at, err := publishOne(ctx, cl, typ, "s4", seq.Add(1))
		if err != nil {
			return 0, err
		}
		mu.Lock()
		sent202 = append(sent202, sent{id, at})
		mu.Unlock()
		return 1, nil
	}
	base = e.Recv.Unique()
	wait := e.profile(ctx, "s4", 0, e.Cfg.Window, roles.API, roles.Relay, roles.Worker)
	m := e.meter(roles.API, roles.Relay, roles.Worker)
	paced := load.Paced(ctx, 1000, e.Cfg.Window, 64, op)
	arrived := waitFor(ctx, e, base+int64(len(sent202)), 30*time.Second)
	used, over := m.stop()
	files := wait()
	var lat, toKafka, fromKafka []time.Duration
	missing := 0
	for _, s := range sent202 {
		at, ok := e.Recv.Arrival("/e2e", s.id)
		if !ok {
			missing++
			continue
		}
		lat = append(lat, max(at.Sub(s.at), 0))
		if k, ok := tap.seen(s.id); ok {
			toKafka = append(toKafka, max(k.Sub(s.at), 0))
			fromKafka = append(fromKafka, max(at.Sub(k), 0))
		}
	}
	sum := load.Summarize(lat)
	relayLeg, workerLeg := load.Summarize(toKafka), load.Summarize(fromKafka)
	ingest := paced.Latency
	limit, limitText := 50*time.Millisecond, "p99 < 50 ms (kfake)"
	if len(e.Cfg.Brokers) > 0 {
		limit, limitText = 100*time.Millisecond, "p99 < 100 ms (real Kafka)"
	}
	sc.Rows = append(sc.Rows, report.Row{
		Name: "202 → webhook arrival at 1,000 events/s, p99", Value: float64(sum.P99.Microseconds()) / 1000, Unit: "ms",
		Target: limitText, Verdict: report.Check(arrived && missing == 0 && paced.Errors == 0 && sum.N > 0 && sum.P99 < limit),
		Latency: &sum,
	}, report.Row{
		Name: "  of which 202 → record readable in Kafka (relay)", Value: float64(relayLeg.P99.Microseconds()) / 1000, Unit: "ms",
		Latency: &relayLeg,
	}, report.Row{
		Name: "  of which Kafka → webhook arrival (worker)", Value: float64(workerLeg.P99.Microseconds()) / 1000, Unit: "ms",
		Latency: &workerLeg,
	}, report.Row{
		Name: "POST /v1/events at 1,000 events/s (send → 202)", Value: paced.Rate(), Unit: "events/s",
		Latency: &ingest, Detail: fmt.Sprintf("worst send lag %s", load.Ms(paced.MaxLag)),
	})
	if paced.Errors > 0 || missing > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("At 1,000 events/s: %d sends failed (first: %v); %d accepted events never arrived.", paced.Errors, paced.FirstErr, missing))
	}
	sc.Notes = append(sc.Notes, cpuNote("the 1,000 events/s run", used, over))
	sc.Notes = append(sc.Notes, profileNote(files)...)

	// (b) Highest sustained rate.
	best, bestDelivered := 0, 0.0
	var stepNotes []string
	for _, rate := range steps {
		r, err := e.step(ctx, cl, typ, &seq, rate, stepLen)
		if err != nil {
			return err
		}
		stepNotes = append(stepNotes, r.String())
		if !r.sustained {
			break
		}
		best, bestDelivered = rate, r.delivered
		if !r.drained {
			break
		}
	}
	sc.Rows = append(sc.Rows, report.Row{
		Name: "highest sustained end-to-end rate", Value: bestDelivered, Unit: "deliveries/s",
		CeilingName: ceiling.CeilingName, Ceiling: ceiling.Ceiling, CeilingLatency: ceiling.CeilingLatency,
		Target: "≥ 5,000 deliveries/s", Verdict: report.Check(bestDelivered >= 5000),
		Detail: fmt.Sprintf("offered %s events/s", report.Num(float64(best))),
	})
	sc.Notes = append(sc.Notes, "Steps: "+joinStrings(stepNotes)+".")
	if d := e.Recv.Dups(); d > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("The receiver saw %d repeated webhook-ids so far in this run (at-least-once delivery).", d))
	}
	return nil
}

// tap reads an event topic from the start and records when each event id
// first became readable, to split the end-to-end latency at Kafka.
type tap struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	at     map[string]time.Time
}

func startTap(brokers []string, topic string) (*tap, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &tap{cl: cl, cancel: cancel, done: make(chan struct{}), at: map[string]time.Time{}}
	go func() {
		defer close(t.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			t.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == kafka.HeaderEventID {
						if _, ok := t.at[string(h.Value)]; !ok {
							t.at[string(h.Value)] = now
						}
					}
				}
			})
			t.mu.Unlock()
		}
	}()
	return t, nil
}

func (t *tap) seen(id string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.at[id]
	return at, ok
}

func (t *tap) close() {
	t.cancel()
	<-t.done
	t.cl.Close()
}

// publishOne sends order n and returns its event id and when the 202 arrived.
func publishOne(ctx context.Context, cl *load.Client, typ, tag string, n int64) (string, time.Time, error) {
	key, idem := names(tag, n)
	code, raw, err := cl.Post(ctx, "/v1/events", singleEvent(nil, typ, key, n), api.IdempotencyKeyHeader, idem)
	at := time.Now()
	if err != nil {
		return "", at, err
	}
	if code != http.StatusAccepted {
		return "", at, fmt.Errorf("POST /v1/events: status %d: %.200s", code, raw)
	}
	// {"id":"<uuid>",...}: the id is the first field of outbox.Event.
	i := bytes.Index(raw, []byte(`"id":"`))
	if i < 0 || len(raw) < i+6+36 {
		return "", at, fmt.Errorf("POST /v1/events: no id in %.200s", raw)
	}
	return string(raw[i+6 : i+6+36]), at, nil
}

// waitFor waits until the receiver has n unique arrivals, at most limit.
func waitFor(ctx context.Context, e *Env, n int64, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return e.Recv.WaitUnique(ctx, n)
}

type stepResult struct {
	rate               int
	accepted           int64
	delivered          float64 // per second over the last two thirds
	growth, growthMax  int64
	sustained, drained bool
	drainTook          time.Duration
}

func (r stepResult) String() string {
	verdict := "sustained"
	if !r.sustained {
		verdict = "not sustained"
	}
	s := fmt.Sprintf("%s/s offered: %s accepted, %s/s delivered, backlog grew by %d (limit %d), %s",
		report.Num(float64(r.rate)), report.Num(float64(r.accepted)), report.Num(r.delivered), r.growth, r.growthMax, verdict)
	if !r.drained {
		s += ", backlog did not drain in 60s"
	} else {
		s += fmt.Sprintf(", drained %s after", r.drainTook.Round(10*time.Millisecond))
	}
	return s
}

// step offers rate events/s for d as paced batches of 100 and judges whether
// the platform kept up.
func (e *Env) step(ctx context.Context, cl *load.Client, typ string, seq *atomic.Int64, rate int, d time.Duration) (stepResult, error) {
	const size = 100
	res := stepResult{rate: rate}
	base := e.Recv.Unique()
	var accepted atomic.Int64
	want := []byte(`"status":202`)
	op := func(ctx context.Context, w int) (int, error) {
		first := seq.Add(size) - size + 1
		code, raw, err := cl.Post(ctx, "/v1/events:batch", batchBody(nil, "s4", typ, first, size))
		if err != nil {
			return 0, err
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("POST /v1/events:batch: status %d: %.200s", code, raw)
		}
		n := bytes.Count(raw, want)
		accepted.Add(int64(n))
		return n, nil
	}
	type sample struct {
		at      time.Time
		backlog int64
		unique  int64
	}
	take := func() sample {
		u := e.Recv.Unique() - base
		return sample{time.Now(), accepted.Load() - u, u}
	}
	thirdC := make(chan sample, 1)
	timer := time.AfterFunc(d/3, func() { thirdC <- take() })
	load.Paced(ctx, float64(rate)/size, d, 32, op)
	end := take()
	var third sample
	select {
	case third = <-thirdC:
	default:
		timer.Stop()
		return res, fmt.Errorf("step at %d/s ended before its first third", rate)
	}
	res.accepted = accepted.Load()
	res.delivered = float64(end.unique-third.unique) / end.at.Sub(third.at).Seconds()
	res.growth = end.backlog - third.backlog
	sentLater := float64(rate) * end.at.Sub(third.at).Seconds()
	// Both samples may fall while a batch is accepted but not yet delivered:
	// two batches of slack on top of the 5 %.
	res.growthMax = int64(0.05*sentLater) + 2*size
	res.sustained = float64(res.accepted) >= 0.95*float64(rate)*d.Seconds() && res.growth <= res.growthMax
	t := time.Now()
	res.drained = waitFor(ctx, e, base+res.accepted, 60*time.Second)
	res.drainTook = time.Since(t)
	return res, nil
}

// httpCeiling measures, once per run, how many webhook-sized signed POSTs a
// bare net/http client with 64 connections gets through to the receiver.
func (e *Env) httpCeiling(ctx context.Context) (report.Row, error) {
	if e.ceiling != nil {
		return *e.ceiling, nil
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	key := []byte("0123456789abcdef0123456789abcdef")
	url := e.Recv.URL("/ceiling")
	var seq atomic.Int64
	op := func(ctx context.Context, w int) (int, error) {
		n := seq.Add(1)
		id := "ceiling-" + strconv.FormatInt(n, 10)
		now := time.Now()
		body := outbox.WebhookBody("bench.e2e", now, appendData(nil, n))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(signature.HeaderID, id)
		req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(signature.HeaderSignature, signature.Sign(key, id, now, body))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return 0, fmt.Errorf("receiver answered %d", resp.StatusCode)
		}
		return 1, nil
	}
	res := load.Closed(ctx, 64, e.Cfg.Warm, e.Cfg.Window, op)
	if res.Errors > 0 {
		return report.Row{}, fmt.Errorf("HTTP ceiling: %d requests failed; the first: %w", res.Errors, res.FirstErr)
	}
	lat := res.Latency
	e.ceiling = &report.Row{CeilingName: "bare net/http client → receiver, 64 connections", Ceiling: res.Rate(), CeilingLatency: &lat}
	return *e.ceiling, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = report.Num(float64(n))
	}
	return joinStrings(s)
}

func joinStrings(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v)
	}
	return b.String()
}
