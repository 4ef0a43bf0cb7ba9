package worker

import (
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/platform/config"
)

// Config tunes the worker. Every field has a default (WithDefaults).
type Config struct {
	// Group is the Kafka consumer group; every worker of a deployment shares it
	// (ECS_WORKER_GROUP, default "ecs-worker").
	Group string
	// Lanes is how many deliveries to one subscription may be in flight at once.
	// Events with the same key always use the same lane, so their first attempts
	// go out in the order they were accepted (ECS_WORKER_LANES, default 16).
	Lanes int
	// LaneQueue is how many deliveries a lane holds in memory; beyond it they wait
	// in PostgreSQL for the poller, so a slow subscriber costs bounded memory and
	// never blocks the Kafka partition (ECS_WORKER_LANE_QUEUE, default 256).
	LaneQueue int
	// MaxAttempts before a delivery is dead (ECS_WORKER_MAX_ATTEMPTS, default 8).
	MaxAttempts int
	// RetryInitial, RetryMultiplier and RetryMax shape the exponential backoff
	// between attempts, with ±20% jitter (ECS_WORKER_RETRY_INITIAL 5s,
	// ECS_WORKER_RETRY_MULTIPLIER 4, ECS_WORKER_RETRY_MAX 10h: about 5s, 20s,
	// 80s, 5m, 21m, 1.4h, 5.7h).
	RetryInitial    time.Duration
	RetryMultiplier float64
	RetryMax        time.Duration
	// PollInterval is how often the poller looks for due retries and orphaned
	// deliveries (ECS_WORKER_POLL_INTERVAL, default 1s).
	PollInterval time.Duration
	// ClaimBatch is the most deliveries one poll claims (default 500).
	ClaimBatch int
	// HeartbeatInterval and StaleAfter: a worker whose heartbeat is older than
	// StaleAfter is taken for dead and its deliveries are claimed by others
	// (ECS_WORKER_HEARTBEAT_INTERVAL 5s, ECS_WORKER_STALE_AFTER 30s).
	HeartbeatInterval time.Duration
	StaleAfter        time.Duration
	// MetadataRefresh is how soon a new event type's topic is consumed
	// (ECS_WORKER_METADATA_REFRESH, default 10s).
	MetadataRefresh time.Duration
	// OrderGapTimeout is how long a key's event waits for an earlier event of the
	// same key that has not arrived yet (it travels through another topic); then
	// the gap is skipped and ordering for it given up, never the event
	// (ECS_WORKER_ORDER_GAP_TIMEOUT, default 5s).
	OrderGapTimeout time.Duration
	// MaxHeld caps the records held for gaps; beyond it the oldest gaps are
	// skipped (default 10000).
	MaxHeld int
	// SessionTimeout is how long Kafka waits for a silent worker (one that
	// crashed without leaving the group) before giving its partitions to others;
	// RebalanceTimeout bounds a rebalance (ECS_WORKER_SESSION_TIMEOUT, default
	// 45s; ECS_WORKER_REBALANCE_TIMEOUT, default 60s: kgo's and Kafka's own).
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// HTTP configures the webhook client (ECS_WORKER_HTTP_TIMEOUT, default 15s).
	HTTP sender.Config
}

// LoadConfig reads ECS_WORKER_* variables.
func LoadConfig(e *config.Env) Config {
	return Config{
		Group:             e.String("ECS_WORKER_GROUP", "ecs-worker"),
		Lanes:             e.Int("ECS_WORKER_LANES", 16),
		LaneQueue:         e.Int("ECS_WORKER_LANE_QUEUE", 256),
		MaxAttempts:       e.Int("ECS_WORKER_MAX_ATTEMPTS", 8),
		RetryInitial:      e.Duration("ECS_WORKER_RETRY_INITIAL", 5*time.Second),
		RetryMultiplier:   e.Float("ECS_WORKER_RETRY_MULTIPLIER", 4),
		RetryMax:          e.Duration("ECS_WORKER_RETRY_MAX", 10*time.Hour),
		PollInterval:      e.Duration("ECS_WORKER_POLL_INTERVAL", time.Second),
		ClaimBatch:        500,
		HeartbeatInterval: e.Duration("ECS_WORKER_HEARTBEAT_INTERVAL", 5*time.Second),
		StaleAfter:        e.Duration("ECS_WORKER_STALE_AFTER", 30*time.Second),
		MetadataRefresh:   e.Duration("ECS_WORKER_METADATA_REFRESH", 10*time.Second),
		OrderGapTimeout:   e.Duration("ECS_WORKER_ORDER_GAP_TIMEOUT", 5*time.Second),
		SessionTimeout:    e.Duration("ECS_WORKER_SESSION_TIMEOUT", 45*time.Second),
		RebalanceTimeout:  e.Duration("ECS_WORKER_REBALANCE_TIMEOUT", 60*time.Second),
		MaxHeld:           10000,
		HTTP:              sender.Config{Timeout: e.Duration("ECS_WORKER_HTTP_TIMEOUT", 15*time.Second)},
	}
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Group == "" {
		c.Group = "ecs-worker"
	}
	if c.Lanes == 0 {
		c.Lanes = 16
	}
	if c.LaneQueue == 0 {
		c.LaneQueue = 256
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.RetryMultiplier == 0 {
		c.RetryMultiplier = 4
	}
	if c.ClaimBatch == 0 {
		c.ClaimBatch = 500
	}
	def(&c.RetryInitial, 5*time.Second)
	def(&c.RetryMax, 10*time.Hour)
	def(&c.PollInterval, time.Second)
	def(&c.HeartbeatInterval, 5*time.Second)
	def(&c.StaleAfter, 30*time.Second)
	def(&c.MetadataRefresh, 10*time.Second)
	def(&c.OrderGapTimeout, 5*time.Second)
	def(&c.SessionTimeout, 45*time.Second)
	def(&c.RebalanceTimeout, 60*time.Second)
	if c.MaxHeld == 0 {
		c.MaxHeld = 10000
	}
	c.HTTP = c.HTTP.WithDefaults()
	return c
}

// Validate names every bad field.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	check(c.Lanes >= 1 && c.Lanes <= 1024, "ECS_WORKER_LANES must be between 1 and 1024")
	check(c.LaneQueue >= 1, "ECS_WORKER_LANE_QUEUE must be at least 1")
	check(c.MaxAttempts >= 1 && c.MaxAttempts <= 100, "ECS_WORKER_MAX_ATTEMPTS must be between 1 and 100")
	check(c.RetryInitial >= time.Millisecond, "ECS_WORKER_RETRY_INITIAL must be at least 1ms")
	check(c.RetryMultiplier >= 1, "ECS_WORKER_RETRY_MULTIPLIER must be at least 1")
	check(c.RetryMax >= c.RetryInitial, "ECS_WORKER_RETRY_MAX must be at least ECS_WORKER_RETRY_INITIAL")
	check(c.PollInterval >= 10*time.Millisecond, "ECS_WORKER_POLL_INTERVAL must be at least 10ms")
	check(c.HeartbeatInterval >= 10*time.Millisecond, "ECS_WORKER_HEARTBEAT_INTERVAL must be at least 10ms")
	check(c.StaleAfter >= 2*c.HeartbeatInterval, "ECS_WORKER_STALE_AFTER must be at least twice ECS_WORKER_HEARTBEAT_INTERVAL")
	check(c.MetadataRefresh >= 100*time.Millisecond, "ECS_WORKER_METADATA_REFRESH must be at least 100ms")
	check(c.OrderGapTimeout >= 10*time.Millisecond, "ECS_WORKER_ORDER_GAP_TIMEOUT must be at least 10ms")
	check(c.SessionTimeout >= time.Second, "ECS_WORKER_SESSION_TIMEOUT must be at least 1s (brokers refuse less than group.min.session.timeout.ms, 6s by default)")
	check(c.RebalanceTimeout >= time.Second, "ECS_WORKER_REBALANCE_TIMEOUT must be at least 1s")
	check(c.HTTP.Timeout >= 100*time.Millisecond, "ECS_WORKER_HTTP_TIMEOUT must be at least 100ms")
	return errors.Join(errs...)
}

// RetryDelay is the wait after the given number of failed attempts (1 = after
// the first), from cenkalti/backoff with ±20% jitter.
func (c Config) RetryDelay(failed int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     c.RetryInitial,
		RandomizationFactor: 0.2,
		Multiplier:          c.RetryMultiplier,
		MaxInterval:         c.RetryMax,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	d := b.InitialInterval
	for range failed {
		d = b.NextBackOff()
	}
	return d
}
