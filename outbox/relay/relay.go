// Package relay moves outbox rows to Kafka. One relay per database leads (an
// advisory lock); it wakes on NOTIFY ecs_outbox, polls as a fallback so a lost
// notification or a dropped connection only delays, produces each batch with
// franz-go's idempotent producer, and deletes rows only after the broker
// acknowledged all of them. Killed at any instant it loses nothing: unacknowledged
// rows stay and are produced again, and the worker's dedup key absorbs the copies.
package relay

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/service"
)

//go:embed queries.sql
var queriesSQL string

var q struct {
	TryLead      string `sql:"try_lead"`
	Listen       string `sql:"listen"`
	Claim        string `sql:"claim"`
	Remove       string `sql:"remove"`
	AsyncCommit  string `sql:"async_commit"`
	Backlog      string `sql:"backlog"`
	NotifyTopics string `sql:"notify_topics"`
}

func init() { db.MustLoadQueries(queriesSQL, &q) }

// Config tunes the relay.
type Config struct {
	// BatchSize is the most rows read and produced per round
	// (ECS_RELAY_BATCH_SIZE, default 5000: a 1,000,000-row drain is ~20% faster
	// than with 1000, and a batch is only as large as the backlog).
	BatchSize int
	// PollInterval bounds how long a committed row waits when its NOTIFY was
	// lost (ECS_RELAY_POLL_INTERVAL, default 1s).
	PollInterval time.Duration
	// LeaderRetry is how often a standby relay tries to take the lead
	// (ECS_RELAY_LEADER_RETRY, default 2s).
	LeaderRetry time.Duration
	// ProduceTimeout fails a record the broker has not acknowledged in time; the
	// batch is then retried (ECS_RELAY_PRODUCE_TIMEOUT, default 30s).
	ProduceTimeout time.Duration
	// Pipeline is how many batches may be in flight at once: while the broker
	// acknowledges one, the next is claimed and produced and the one before is
	// deleted. 1 relays one batch at a time (ECS_RELAY_PIPELINE, default 3).
	Pipeline int
	// Linger is how long the producer gathers a partition's records into one
	// request. Without it, a real broker gets a request per handful of records
	// (the idempotent producer keeps few requests in flight per broker), and a
	// drain ran at 16,000 rows/s instead of over 100,000 (docs/benchmarks.md,
	// scenario 3). It adds at most this much to an event's latency
	// (ECS_RELAY_LINGER, default 5ms).
	Linger time.Duration
}

// LoadConfig reads ECS_RELAY_* variables.
func LoadConfig(e *config.Env) Config {
	return Config{
		BatchSize:      e.Int("ECS_RELAY_BATCH_SIZE", 5000),
		PollInterval:   e.Duration("ECS_RELAY_POLL_INTERVAL", time.Second),
		LeaderRetry:    e.Duration("ECS_RELAY_LEADER_RETRY", 2*time.Second),
		ProduceTimeout: e.Duration("ECS_RELAY_PRODUCE_TIMEOUT", 30*time.Second),
		Pipeline:       e.Int("ECS_RELAY_PIPELINE", 3),
		Linger:         e.Duration("ECS_RELAY_LINGER", 5*time.Millisecond),
	}
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.LeaderRetry == 0 {
		c.LeaderRetry = 2 * time.Second
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 30 * time.Second
	}
	if c.Pipeline == 0 {
		c.Pipeline = 3
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		errs = append(errs, errors.New("ECS_RELAY_BATCH_SIZE must be between 1 and 100000"))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("ECS_RELAY_POLL_INTERVAL must be at least 10ms"))
	}
	if c.LeaderRetry < 10*time.Millisecond {
		errs = append(errs, errors.New("ECS_RELAY_LEADER_RETRY must be at least 10ms"))
	}
	if c.ProduceTimeout < time.Second {
		errs = append(errs, errors.New("ECS_RELAY_PRODUCE_TIMEOUT must be at least 1s"))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, errors.New("ECS_RELAY_LINGER must be between 0 and 1s"))
	}
	if c.Pipeline < 1 || c.Pipeline > 16 {
		errs = append(errs, errors.New("ECS_RELAY_PIPELINE must be between 1 and 16"))
	}
	return errors.Join(errs...)
}

// Relay is the outbox relay service.
type Relay struct {
	service.Base
	cfg     Config
	kcfg    kafka.Config
	kopts   []kgo.Opt
	pool    *pgxpool.Pool
	log     *slog.Logger
	metrics *relayMetrics

	mu      sync.Mutex
	leading bool
}

// New builds a relay. Extra kgo options (tests, TLS, SASL) are added to the
// producer's.
func New(cfg Config, kcfg kafka.Config, pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer, kopts ...kgo.Opt) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	kcfg = kcfg.WithDefaults()
	if err := kcfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return &Relay{cfg: cfg, kcfg: kcfg, kopts: kopts, pool: pool, log: log.With("component", "relay"), metrics: newMetrics(reg)}, nil
}

// Leading reports whether this relay holds the lead now.
func (r *Relay) Leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

func (r *Relay) setLeading(v bool) {
	r.mu.Lock()
	r.leading = v
	r.mu.Unlock()
	if v {
		r.metrics.leader.Set(1)
	} else {
		r.metrics.leader.Set(0)
	}
}

// Start runs the relay in the background. It can be started again after Stop.
func (r *Relay) Start(ctx context.Context) error {
	// Fail fast on bad options; the clients that produce are made per lead.
	if err := kgo.ValidateOpts(r.clientOpts()...); err != nil {
		return fmt.Errorf("relay: kafka client: %w", err)
	}
	r.StartRun(ctx, r.run)
	return nil
}

func (r *Relay) clientOpts() []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(r.kcfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // with the idempotent producer (kgo's default)
		kgo.RecordDeliveryTimeout(r.cfg.ProduceTimeout),
		kgo.ProducerLinger(r.cfg.Linger),
		kgo.ClientID("ecs-relay"),
	}, r.kopts...)
}

// newClient makes a producer: a fresh idempotent producer session.
func (r *Relay) newClient() (*kgo.Client, error) {
	cl, err := kgo.NewClient(r.clientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("relay: kafka client: %w", err)
	}
	return cl, nil
}

// run campaigns for the lead until stopped.
func (r *Relay) run(ctx context.Context, stopping <-chan struct{}) {
	for {
		if err := r.campaign(ctx, stopping); err != nil && ctx.Err() == nil {
			r.log.Warn("relay lost or could not take the lead", "error", err)
		}
		select {
		case <-stopping:
			return
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.LeaderRetry):
		}
	}
}

// campaign opens a dedicated connection, takes the lead if it is free, and relays
// until the connection breaks or the relay stops. The lock lives and dies with
// the connection, so a relay whose connection dropped has lost the lead and stops
// producing before another takes it.
func (r *Relay) campaign(ctx context.Context, stopping <-chan struct{}) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A standby keeps its connection and retries the lock on it.
	for {
		var leading bool
		if err := conn.QueryRow(ctx, q.TryLead).Scan(&leading); err != nil {
			return fmt.Errorf("try lead: %w", err)
		}
		if leading {
			break
		}
		select {
		case <-stopping:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.LeaderRetry):
		}
	}
	if _, err := conn.Exec(ctx, q.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.setLeading(true)
	defer r.setLeading(false)
	r.log.Info("relay leads")

	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	wake <- struct{}{} // drain what accumulated while nobody led
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		defer cancel() // a soft stop ends the listen loop too
		r.drainLoop(leadCtx, stopping, wake)
	}()
	defer func() { cancel(); <-drained }()

	for {
		waitCtx, stopWait := context.WithTimeout(leadCtx, r.cfg.PollInterval)
		_, err := conn.WaitForNotification(waitCtx)
		stopWait()
		if leadCtx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("wait for notification: %w", err)
		}
		// A notification, or the poll interval passed: either way look for rows.
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// drainLoop relays batches while there is a backlog, then waits for a wake-up.
//
// After a failed batch it throws its Kafka client away and makes a new one.
// Records that timed out leave an idempotent producer's partition state failed,
// and kgo does not abandon records in flight, so a client that failed once can
// fail every later batch; a new client is a new producer session. Copies of
// records the old session did get written are absorbed downstream by the dedup
// key, and a key's first copies stay in order.
func (r *Relay) drainLoop(ctx context.Context, stopping <-chan struct{}, wake <-chan struct{}) {
	var (
		cl     *kgo.Client
		topics *kafka.Topics
	)
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval = 100 * time.Millisecond
	retry.MaxInterval = 10 * time.Second
	retry.MaxElapsedTime = 0
	for {
		select {
		case <-stopping:
			return
		case <-ctx.Done():
			return
		case <-wake:
		}
		for {
			var err error
			if cl == nil {
				if cl, err = r.newClient(); err == nil {
					topics = kafka.NewTopics(cl, r.kcfg)
				}
			}
			if err == nil {
				err = r.drain(ctx, stopping, cl, topics)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if cl != nil {
					cl.Close()
					cl = nil
				}
				r.metrics.errors.Inc()
				wait := retry.NextBackOff()
				r.log.Warn("relay batch failed; rows stay in the outbox", "error", err, "retry_in", wait)
				select {
				case <-stopping:
					return
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				continue
			}
			retry.Reset()
			break
		}
	}
}

// drain relays batches until the outbox has less than a batch left (or the
// relay stops), keeping up to Config.Pipeline batches in flight: the next batch
// is claimed and produced while the broker acknowledges the previous ones, and
// a batch whose records were all acknowledged is deleted by a goroutine of its
// own, on another connection, while the next claim runs. Claims skip the rows
// of batches in flight or being deleted (by id, never by a high-water mark).
// kgo keeps the order of records per partition across batches, and after a
// failed record it fails the partition's later ones too, so a key's events
// never overtake each other: a batch with a failure stays in the outbox and is
// produced again.
func (r *Relay) drain(ctx context.Context, stopping <-chan struct{}, cl *kgo.Client, topics *kafka.Topics) error {
	var (
		pending  []*inflight // produced; acknowledgements not yet awaited
		firstErr error

		mu       sync.Mutex
		deleting []*inflight // acknowledged; deleted in this order
		delErr   error
	)
	toDelete := make(chan *inflight, r.cfg.Pipeline)
	deleted := make(chan struct{})
	go func() {
		defer close(deleted)
		for b := range toDelete {
			err := r.remove(ctx, b)
			mu.Lock()
			deleting = deleting[1:]
			if err != nil && delErr == nil {
				delErr = err
			}
			mu.Unlock()
		}
	}()
	skip := func() []int64 {
		ids := []int64{}
		for _, p := range pending {
			ids = append(ids, p.ids...)
		}
		mu.Lock()
		for _, p := range deleting {
			ids = append(ids, p.ids...)
		}
		mu.Unlock()
		return ids
	}
	finishOldest := func() {
		b := pending[0]
		pending = pending[1:]
		b.wg.Wait()
		if b.err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("produce: %w", b.err)
			}
			return // its rows stay in the outbox
		}
		mu.Lock()
		deleting = append(deleting, b)
		mu.Unlock()
		toDelete <- b
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if delErr != nil && firstErr == nil {
			firstErr = delErr
		}
		return firstErr != nil
	}
loop:
	for !failed() {
		b, err := r.claim(ctx, cl, topics, skip())
		if err != nil {
			firstErr = err
			break
		}
		full := b != nil && len(b.rows) == r.cfg.BatchSize
		if b != nil {
			pending = append(pending, b)
		}
		for len(pending) > 0 && (len(pending) >= r.cfg.Pipeline || !full) {
			finishOldest()
		}
		if !full {
			break
		}
		select {
		case <-stopping:
			break loop
		default:
		}
	}
	for len(pending) > 0 {
		finishOldest()
	}
	close(toDelete)
	<-deleted
	failed()
	return firstErr
}

type row struct {
	outboxID int64
	record   *kgo.Record
}

// inflight is a batch whose records were handed to the producer.
type inflight struct {
	rows  []row
	ids   []int64
	start time.Time
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error // the first record that failed
}

// claim reads the next batch (skipping the rows skip names) and
// produces it without waiting; nil means the outbox has nothing more to claim.
func (r *Relay) claim(ctx context.Context, cl *kgo.Client, topics *kafka.Topics, skip []int64) (*inflight, error) {
	start := time.Now()
	rows, _ := r.pool.Query(ctx, q.Claim, r.cfg.BatchSize, skip)
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var (
			rw row
			// pgtype.UUID, not uuid.UUID: pgx scans the latter through its
			// string form (sql.Scanner), a cost paid per row.
			id        pgtype.UUID
			typ       string
			key       *string
			keySeq    *int64
			data      string
			createdAt time.Time
			topic     string
		)
		if err := cr.Scan(&rw.outboxID, &id, &typ, &key, &keySeq, &data, &createdAt, &topic); err != nil {
			return row{}, err
		}
		eventID := uuid.UUID(id.Bytes).String()
		k := eventID
		if key != nil {
			k = *key
		}
		rw.record = &kgo.Record{
			Topic: topic,
			Key:   []byte(k),
			Value: outbox.WebhookBody(typ, createdAt, []byte(data)),
			Headers: []kgo.RecordHeader{
				{Key: kafka.HeaderEventID, Value: []byte(eventID)},
				{Key: kafka.HeaderEventType, Value: []byte(typ)},
			},
			// No Timestamp: kgo measures RecordDeliveryTimeout from it, so the
			// event's (possibly old) acceptance time would fail the record before
			// it is sent. The body carries the acceptance time.
		}
		if keySeq != nil {
			rw.record.Headers = append(rw.record.Headers, kgo.RecordHeader{Key: kafka.HeaderKeySeq, Value: strconv.AppendInt(nil, *keySeq, 10)})
		}
		return rw, nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim rows: %w", err)
	}
	if len(batch) == 0 {
		return nil, nil
	}

	seen := map[string]bool{}
	var names []string
	for _, rw := range batch {
		if !seen[rw.record.Topic] {
			seen[rw.record.Topic] = true
			names = append(names, rw.record.Topic)
		}
	}
	fresh, err := topics.Ensure(ctx, names...)
	if err != nil {
		return nil, err
	}
	if len(fresh) > 0 {
		// Workers refresh their topic list on this instead of waiting for
		// their periodic metadata refresh, so a new event type's first event
		// is not held back.
		if _, err := r.pool.Exec(ctx, q.NotifyTopics); err != nil {
			r.log.Warn("could not announce new topics", "topics", fresh, "error", err)
		}
	}

	// Produce in outbox order: kgo keeps the order of records per partition, and
	// records of one key share a partition.
	b := &inflight{rows: batch, ids: make([]int64, len(batch)), start: start}
	b.wg.Add(len(batch))
	for i, rw := range batch {
		b.ids[i] = rw.outboxID
		cl.Produce(ctx, rw.record, func(_ *kgo.Record, err error) {
			if err != nil {
				b.mu.Lock()
				if b.err == nil {
					b.err = err
				}
				b.mu.Unlock()
			}
			b.wg.Done()
		})
	}
	return b, nil
}

// remove deletes a batch whose records were all acknowledged.
func (r *Relay) remove(ctx context.Context, b *inflight) error {
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		batch.Queue(q.AsyncCommit)
		batch.Queue(q.Remove, b.ids)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("remove relayed rows: %w", err)
	}
	r.metrics.produced.Add(float64(len(b.rows)))
	r.metrics.batchDuration.Observe(time.Since(b.start).Seconds())
	r.log.Debug("relayed batch", "rows", len(b.rows), "duration", time.Since(b.start))
	return nil
}

// Backlog counts rows not yet relayed.
func Backlog(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, q.Backlog).Scan(&n); err != nil {
		return 0, fmt.Errorf("relay: backlog: %w", err)
	}
	return n, nil
}
