package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/filter"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

// holdPoll bounds a poll while records wait for a gap, so gap timeouts fire
// even when no new record arrives.
const holdPoll = 100 * time.Millisecond

// consumerState is what the consume loop keeps between polls. mu is held from
// the moment a poll returns until its offsets are committed, and by the
// rebalance callbacks, which kgo runs before it rejoins and re-reads committed
// offsets. So a revocation always lands between two polls: held records are
// dropped exactly when they are certain to be read again from the last commit.
//
// (Noting revocations and applying them at the next loop turn instead loses
// records: the loop may already have polled the re-read copy of a held record,
// dropped it as a duplicate of the held one, and moved past it.)
type consumerState struct {
	mu   sync.Mutex
	seq  *sequencer
	last map[string]map[int32]*kgo.Record // per partition, the last polled record
}

func newConsumerState(cfg Config) *consumerState {
	return &consumerState{seq: newSequencer(cfg.OrderGapTimeout, cfg.MaxHeld), last: map[string]map[int32]*kgo.Record{}}
}

// revoked is the OnPartitionsRevoked and OnPartitionsLost callback.
func (cs *consumerState) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.seq.forget(lost)
	for t, ps := range lost {
		for _, p := range ps {
			delete(cs.last[t], p)
		}
	}
}

// consume polls records until ctx ends. Records pass the sequencer (a key's
// events in key_seq order), become deliveries in PostgreSQL together with the
// keys' progress, and only then are their offsets committed, never past a held
// record: a crash anywhere makes the next owner of a partition re-read records
// whose deliveries may already exist, and the dedup key absorbs them.
func (w *Worker) consume(ctx context.Context, id uuid.UUID, cl *kgo.Client, cs *consumerState, d *dispatcher, log *slog.Logger) {
	for ctx.Err() == nil {
		cs.mu.Lock()
		holding := cs.seq.holding()
		cs.mu.Unlock()
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if holding {
			pollCtx, cancel = context.WithTimeout(ctx, holdPoll)
		}
		fetches := cl.PollRecords(pollCtx, 1000)
		cancel()
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				log.Warn("fetch error", "topic", topic, "partition", partition, "error", err)
			}
		})
		w.process(ctx, id, cl, cs, d, fetches.Records(), log)
	}
}

// process runs one poll's records through the sequencer, stores the released
// ones and commits, all under cs.mu.
func (w *Worker) process(ctx context.Context, id uuid.UUID, cl *kgo.Client, cs *consumerState, d *dispatcher, recs []*kgo.Record, log *slog.Logger) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	seq := cs.seq
	if len(recs) == 0 && !seq.holding() {
		return
	}
	w.metrics.consumed.Add(float64(len(recs)))
	for _, r := range recs {
		if cs.last[r.Topic] == nil {
			cs.last[r.Topic] = map[int32]*kgo.Record{}
		}
		cs.last[r.Topic][r.Partition] = r
	}
	if keys := seq.unknown(recs); len(keys) > 0 {
		var progress map[string]int64
		if !retry(ctx, log, "load key progress", func() (err error) {
			progress, err = w.loadProgress(ctx, keys)
			return err
		}) {
			return
		}
		seq.load(keys, progress)
	}
	ready := seq.push(recs, time.Now())
	if len(ready) > 0 && !retry(ctx, log, "store deliveries", func() error { return w.ingest(ctx, id, ready, seq, d) }) {
		return
	}
	w.commit(ctx, cl, append(recs, ready...), cs.last, seq, log)
}

// commit commits, for every partition touched, the offset after its last polled
// record, or that of its lowest held record if one waits.
func (w *Worker) commit(ctx context.Context, cl *kgo.Client, touched []*kgo.Record, last map[string]map[int32]*kgo.Record, seq *sequencer, log *slog.Logger) {
	if len(touched) == 0 {
		return
	}
	floor := seq.heldFloor()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range touched {
		if offsets[r.Topic] == nil {
			offsets[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		if _, done := offsets[r.Topic][r.Partition]; done {
			continue
		}
		if h, ok := floor[r.Topic][r.Partition]; ok {
			offsets[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: h.LeaderEpoch, Offset: h.Offset}
		} else if l, ok := last[r.Topic][r.Partition]; ok {
			offsets[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: l.LeaderEpoch, Offset: l.Offset + 1}
		}
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			// Not fatal: the records come again after a rebalance and dedup absorbs them.
			log.Warn("commit offsets failed", "error", err)
		}
	})
}

// retry runs f until it succeeds or ctx ends (then it returns false).
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) bool {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	for {
		err := f()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := b.NextBackOff()
		log.Warn(what+" failed; retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

func (w *Worker) loadProgress(ctx context.Context, keys []string) (map[string]int64, error) {
	rows, _ := w.pool.Query(ctx, q.LoadProgress, keys)
	out := map[string]int64{}
	var k string
	var n int64
	_, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil })
	return out, err
}

// ingest creates the deliveries of recs and saves the keys' progress in one
// transaction, then queues the new deliveries in record order.
func (w *Worker) ingest(ctx context.Context, id uuid.UUID, recs []*kgo.Record, seq *sequencer, d *dispatcher) error {
	ids := make([]uuid.UUID, 0, len(recs))
	byEvent := make(map[uuid.UUID]int, len(recs)) // event id -> index of its first record
	for i, r := range recs {
		eid, ok := eventID(r)
		if !ok {
			w.log.Warn("record without a valid event id header; skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
			continue
		}
		if _, dup := byEvent[eid]; !dup {
			byEvent[eid] = i
			ids = append(ids, eid)
		}
	}
	keys, seqs := seq.progress(recs)
	sort.Sort(byKey{keys, seqs})

	type created struct {
		job
		idx int
	}
	var jobs []created
	var paused []uuid.UUID
	skipSubs, skipEvents, err := w.filterOut(ctx, recs)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(q.CreateDeliveries, ids, id, skipSubs, skipEvents)
	if len(keys) > 0 {
		b.Queue(q.SaveProgress, keys, seqs)
	}
	err = func() error {
		br := w.pool.SendBatch(ctx, b) // one implicit transaction
		defer br.Close()
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			state string
			cols  jobColumns
		)
		if _, err := pgx.ForEachRow(rows, append([]any{&state}, cols.targets()...), func() error {
			j := cols.job()
			if state != delivery.StateActive {
				paused = append(paused, j.deliveryID) // waits in PostgreSQL until resumed
				return nil
			}
			if j.keyErr != nil {
				w.log.Error("subscription has unusable signing keys", "subscription_id", j.subscriptionID, "error", j.keyErr)
			}
			r := recs[byEvent[j.eventID]]
			j.body, j.orderKey = r.Value, string(r.Key)
			jobs = append(jobs, created{idx: byEvent[j.eventID], job: j})
			return nil
		}); err != nil {
			return err
		}
		if len(keys) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return br.Close()
	}()
	if err != nil {
		return err
	}
	w.metrics.created.Add(float64(len(jobs) + len(paused)))
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].idx < jobs[b].idx })
	overflow := paused
	for _, j := range jobs {
		if !d.offer(j.job) {
			overflow = append(overflow, j.deliveryID)
		}
	}
	w.metrics.overflow.Add(float64(len(overflow)))
	d.release(ctx, overflow)
	return nil
}

type byKey struct {
	keys []string
	seqs []int64
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.seqs[i], b.seqs[j] = b.seqs[j], b.seqs[i]
}

func eventID(r *kgo.Record) (uuid.UUID, bool) {
	for _, h := range r.Headers {
		if h.Key == kafka.HeaderEventID {
			id, err := uuid.ParseBytes(h.Value)
			return id, err == nil
		}
	}
	return uuid.UUID{}, false
}

// filterOut evaluates the filters of the subscriptions that have one against
// recs, and returns the (subscription, event) pairs that get no delivery. A
// filter that fails to evaluate (a missing field, say) counts as false.
func (w *Worker) filterOut(ctx context.Context, recs []*kgo.Record) (subs, events []uuid.UUID, err error) {
	rows, _ := w.pool.Query(ctx, q.FilteredSubs)
	type filtered struct {
		id       uuid.UUID
		patterns []string
		f        *filter.Filter
	}
	var list []filtered
	var (
		id       uuid.UUID
		patterns []string
		expr     string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &patterns, &expr}, func() error {
		f, err := w.filters.get(id, expr)
		if err != nil {
			w.log.Warn("subscription filter does not compile; it gets no deliveries", "subscription_id", id, "error", err)
		}
		list = append(list, filtered{id: id, patterns: patterns, f: f})
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if len(list) == 0 {
		return nil, nil, nil
	}
	for _, r := range recs {
		eid, ok := eventID(r)
		if !ok {
			continue
		}
		var data any
		var body struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		parsed := json.Unmarshal(r.Value, &body) == nil && json.Unmarshal(body.Data, &data) == nil
		typ := header(r, kafka.HeaderEventType)
		if typ == "" {
			typ = body.Type // the body carries it too
		}
		for _, s := range list {
			if !delivery.TypeMatches(typ, s.patterns) {
				continue
			}
			match := false
			if s.f != nil && parsed {
				if match, err = s.f.Match(typ, filterKey(r), data); err != nil {
					w.log.Debug("filter did not evaluate; no delivery", "subscription_id", s.id, "event_id", eid, "error", err)
				}
			}
			if !match {
				subs, events = append(subs, s.id), append(events, eid)
			}
		}
	}
	return subs, events, nil
}

// filterKey is the event key a filter sees: empty for an event without one
// (its record is keyed by the event id, and carries no key_seq).
func filterKey(r *kgo.Record) string {
	if header(r, kafka.HeaderKeySeq) == "" {
		return ""
	}
	return string(r.Key)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// filterCache keeps compiled filters by subscription and source.
type filterCache struct {
	mu sync.Mutex
	m  map[uuid.UUID]cachedFilter
}

type cachedFilter struct {
	expr string
	f    *filter.Filter
	err  error
}

func (c *filterCache) get(id uuid.UUID, expr string) (*filter.Filter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok && e.expr == expr {
		return e.f, e.err
	}
	f, err := filter.Compile(expr)
	if c.m == nil {
		c.m = map[uuid.UUID]cachedFilter{}
	}
	c.m[id] = cachedFilter{expr: expr, f: f, err: err}
	return f, err
}
