// Package worker delivers events to subscribers. It consumes the event topics in
// a Kafka consumer group; for each record it creates one delivery per matching
// subscription in PostgreSQL (the dedup key makes a redelivered record a no-op),
// commits the offset, and hands the deliveries to per-subscription lanes that
// POST them. A failed attempt is scheduled in PostgreSQL and picked up again by
// the poller of any worker, so retries survive restarts; deliveries held by a
// worker that died are taken over once its heartbeat goes stale. After the last
// attempt a delivery is dead and its record goes to the dead-letter topic.
package worker

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/service"
)

//go:embed queries.sql
var queriesSQL string

var q struct {
	Register          string `sql:"register"`
	Heartbeat         string `sql:"heartbeat"`
	ForgetDeadWorkers string `sql:"forget_dead_workers"`
	LiveWorkers       string `sql:"live_workers"`
	Unregister        string `sql:"unregister"`
	CreateDeliveries  string `sql:"create_deliveries"`
	Release           string `sql:"release"`
	ClaimDue          string `sql:"claim_due"`
	FinishAttempt     string `sql:"finish_attempt"`
	Postpone          string `sql:"postpone"`
	EarlierPending    string `sql:"earlier_pending"`
	AuditDisable      string `sql:"audit_disable"`
	Cancel            string `sql:"cancel"`
	ListenTopics      string `sql:"listen_topics"`
	LoadProgress      string `sql:"load_progress"`
	FilteredSubs      string `sql:"filtered_subscriptions"`
	DisableSub        string `sql:"disable_subscription"`
	SaveProgress      string `sql:"save_progress"`
}

func init() { db.MustLoadQueries(queriesSQL, &q) }

// Worker is the delivery service.
type Worker struct {
	service.Base
	cfg     Config
	kcfg    kafka.Config
	kopts   []kgo.Opt
	pool    *pgxpool.Pool
	sender  *sender.Sender
	events  *outbox.Store // emits the platform's own events
	log     *slog.Logger
	metrics *workerMetrics

	// peers is how many workers are alive (this one included), from the
	// heartbeat: a subscription's limits are shared out between them.
	peers atomic.Int64

	mu      sync.Mutex
	id      uuid.UUID // this run's identity in the workers table
	filters filterCache
}

// New builds a worker. Extra kgo options are added to the consumer's.
func New(cfg Config, kcfg kafka.Config, pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer, kopts ...kgo.Opt) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	kcfg = kcfg.WithDefaults()
	if err := kcfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Worker{
		cfg: cfg, kcfg: kcfg, kopts: kopts, pool: pool,
		sender:  sender.New(cfg.HTTP),
		events:  outbox.NewStore(pool, kcfg.Topic),
		log:     log.With("component", "worker"),
		metrics: newMetrics(reg),
	}, nil
}

// ID is the identity of the current run (a new one per Start).
func (w *Worker) ID() uuid.UUID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// Start registers the worker and starts consuming. It fails fast if PostgreSQL or
// Kafka cannot be reached.
func (w *Worker) Start(ctx context.Context) error {
	if w.Running() {
		return nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("worker: id: %w", err)
	}
	if _, err := w.pool.Exec(ctx, q.Register, id); err != nil {
		return fmt.Errorf("worker: register: %w", err)
	}
	if err := delivery.EnsureEventTypes(ctx, w.events); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if err := w.countPeers(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	cs := newConsumerState(w.cfg)
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(w.kcfg.Brokers...),
		kgo.ClientID("ecs-worker"),
		kgo.ConsumerGroup(w.cfg.Group),
		kgo.SessionTimeout(w.cfg.SessionTimeout),
		kgo.RebalanceTimeout(w.cfg.RebalanceTimeout),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics("^" + regexp.QuoteMeta(w.kcfg.TopicPrefix) + ".+"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The range balancer gives one member the same partition number of every
		// topic; with equal partition counts and the same key hashing, all of a
		// key's events, whatever their type, reach one worker's sequencer.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.OnPartitionsRevoked(cs.revoked),
		kgo.OnPartitionsLost(cs.revoked),
		// Offsets are committed only after the deliveries are in PostgreSQL.
		kgo.DisableAutoCommit(),
		kgo.MetadataMaxAge(w.cfg.MetadataRefresh),
		kgo.MetadataMinAge(min(w.cfg.MetadataRefresh, time.Second)),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}, w.kopts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("worker: kafka client: %w", err)
	}
	if _, err := kafka.NewTopics(cl, w.kcfg).Ensure(ctx, w.kcfg.DLQTopic); err != nil {
		cl.Close()
		return fmt.Errorf("worker: %w", err)
	}
	w.mu.Lock()
	w.id = id
	w.mu.Unlock()
	w.StartRun(ctx, func(ctx context.Context, stopping <-chan struct{}) {
		w.run(ctx, stopping, id, cl, cs)
	})
	return nil
}

// run wires the consumer, the lanes, the poller and the heartbeat. A soft stop
// stops consuming, lets lanes finish the attempt in hand, hands queued deliveries
// back to other workers and commits what was stored. A hard stop (ctx) just ends
// everything, as a crash would: what was in flight is taken over later.
func (w *Worker) run(ctx context.Context, stopping <-chan struct{}, id uuid.UUID, cl *kgo.Client, cs *consumerState) {
	defer cl.Close()
	defer w.sender.CloseIdle()
	log := w.log.With("worker_id", id)
	log.Info("worker started")

	d := newDispatcher(ctx, w, id, cl, log)
	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(ctx)
	wg.Add(3)
	go func() { defer wg.Done(); w.heartbeat(loopCtx, id, log) }()
	go func() { defer wg.Done(); w.watchTopics(loopCtx, cl, log) }()
	go func() { defer wg.Done(); w.poll(loopCtx, id, d, log) }()

	go func() {
		select {
		case <-stopping:
			stopLoops()
		case <-loopCtx.Done():
		}
	}()
	w.consume(loopCtx, id, cl, cs, d, log)
	stopLoops()
	wg.Wait()
	d.stop()
	if ctx.Err() != nil {
		return // hard stop: leave everything as a crash would
	}
	if _, err := w.pool.Exec(ctx, q.Unregister, id); err != nil {
		log.Warn("worker could not unregister", "error", err)
	}
	log.Info("worker stopped")
}

// heartbeat keeps this worker's row fresh so others do not take its deliveries,
// and forgets workers dead for long.
func (w *Worker) heartbeat(ctx context.Context, id uuid.UUID, log *slog.Logger) {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tag, err := w.pool.Exec(ctx, q.Heartbeat, id)
		if err == nil && tag.RowsAffected() == 0 {
			_, err = w.pool.Exec(ctx, q.Register, id)
		}
		if err == nil {
			err = w.countPeers(ctx)
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("heartbeat failed", "error", err)
			}
			continue
		}
		_, _ = w.pool.Exec(ctx, q.ForgetDeadWorkers, (100 * w.cfg.StaleAfter).String())
	}
}

// countPeers reads how many workers are alive.
func (w *Worker) countPeers(ctx context.Context) error {
	var n int64
	if err := w.pool.QueryRow(ctx, q.LiveWorkers, w.cfg.StaleAfter.String()).Scan(&n); err != nil {
		return err
	}
	w.peers.Store(max(n, 1))
	return nil
}

// watchTopics refreshes the consumer's topic list when a relay announces a new
// topic (NOTIFY ecs_topics); the periodic metadata refresh remains the fallback.
func (w *Worker) watchTopics(ctx context.Context, cl *kgo.Client, log *slog.Logger) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pgx.ConnectConfig(ctx, w.pool.Config().ConnConfig.Copy())
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			if _, err := conn.Exec(ctx, q.ListenTopics); err != nil {
				return err
			}
			for {
				if _, err := conn.WaitForNotification(ctx); err != nil {
					return err
				}
				cl.ForceMetadataRefresh()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Debug("topic listener reconnecting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
