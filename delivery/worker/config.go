package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/eventconfigservice/ecs/delivery/egress"
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
	// LaneIdle closes a subscription's lanes (and forgets its limits) after
	// this long without a delivery; the next one opens them again. Deleted and
	// quiet subscriptions so cost nothing (ECS_WORKER_LANE_IDLE, default 5m).
	LaneIdle time.Duration
	// MaxAttempts before a delivery is dead, the first attempt included
	// (ECS_WORKER_MAX_ATTEMPTS, default one more than RetrySchedule has steps: 8).
	MaxAttempts int
	// RetrySchedule is the wait after each failed attempt; past its end the last
	// step repeats. Each wait gets ±20% jitter so that retries of a burst do not
	// arrive together. The default is the industry's (Svix's, and the Standard
	// Webhooks example's): 5s, 5m, 30m, 2h, 5h, 10h, 10h, which spans about 33
	// hours (ECS_WORKER_RETRY_SCHEDULE, comma-separated durations).
	// Subscriptions may bring their own (retry_policy.schedule_seconds).
	RetrySchedule []time.Duration
	// RetryMax caps the wait a subscriber may ask for with Retry-After on 429
	// and 503 (ECS_WORKER_RETRY_MAX, default 10h).
	RetryMax time.Duration
	// BreakerFailures is how many failures in a row open an endpoint's circuit
	// breaker, provided at least 80% of its requests in the last minute failed
	// (so a flaky endpoint under concurrency does not trip it): while it is open no request goes to that URL, its deliveries wait
	// in PostgreSQL without spending attempts, and after BreakerCooldown one probe
	// is let through; its success closes the breaker. Timeouts, connection
	// errors, 408, 429 and 5xx count as failures (ECS_WORKER_BREAKER_FAILURES,
	// default 5; "0" in the environment, or a negative value here, turns
	// breakers off).
	BreakerFailures int
	// BreakerCooldown is how long a breaker stays open before its probe
	// (ECS_WORKER_BREAKER_COOLDOWN, default 30s).
	BreakerCooldown time.Duration
	// DisableAfter disables a subscription whose every attempt has failed for
	// this long, and emits the event ecs.subscription.disabled
	// (ECS_WORKER_DISABLE_AFTER, default 120h = 5 days; "0" in the
	// environment, or a negative value here, never disables).
	DisableAfter time.Duration
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
	// HTTP configures the webhook client (ECS_WORKER_HTTP_TIMEOUT, default 15s;
	// ECS_OUTBOUND_ALLOW_NETWORKS, default none: only public addresses).
	HTTP sender.Config
}

// LoadConfig reads ECS_WORKER_* variables.
func LoadConfig(e *config.Env) Config {
	return Config{
		Group:             e.String("ECS_WORKER_GROUP", "ecs-worker"),
		Lanes:             e.Int("ECS_WORKER_LANES", 16),
		LaneQueue:         e.Int("ECS_WORKER_LANE_QUEUE", 256),
		LaneIdle:          e.Duration("ECS_WORKER_LANE_IDLE", 5*time.Minute),
		MaxAttempts:       e.Int("ECS_WORKER_MAX_ATTEMPTS", 0),
		RetrySchedule:     e.Durations("ECS_WORKER_RETRY_SCHEDULE", nil),
		RetryMax:          e.Duration("ECS_WORKER_RETRY_MAX", 10*time.Hour),
		BreakerFailures:   offIfZero(e.Int("ECS_WORKER_BREAKER_FAILURES", 5)),
		BreakerCooldown:   e.Duration("ECS_WORKER_BREAKER_COOLDOWN", 30*time.Second),
		DisableAfter:      offIfZero(e.Duration("ECS_WORKER_DISABLE_AFTER", 120*time.Hour)),
		PollInterval:      e.Duration("ECS_WORKER_POLL_INTERVAL", time.Second),
		ClaimBatch:        500,
		HeartbeatInterval: e.Duration("ECS_WORKER_HEARTBEAT_INTERVAL", 5*time.Second),
		StaleAfter:        e.Duration("ECS_WORKER_STALE_AFTER", 30*time.Second),
		MetadataRefresh:   e.Duration("ECS_WORKER_METADATA_REFRESH", 10*time.Second),
		OrderGapTimeout:   e.Duration("ECS_WORKER_ORDER_GAP_TIMEOUT", 5*time.Second),
		SessionTimeout:    e.Duration("ECS_WORKER_SESSION_TIMEOUT", 45*time.Second),
		RebalanceTimeout:  e.Duration("ECS_WORKER_REBALANCE_TIMEOUT", 60*time.Second),
		MaxHeld:           10000,
		HTTP:              sender.Config{Timeout: e.Duration("ECS_WORKER_HTTP_TIMEOUT", 15*time.Second), Egress: egress.LoadConfig(e)},
	}
}

// offIfZero maps an explicit 0 from the environment to the struct's "off"
// (negative), since a zero field takes the default.
func offIfZero[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
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
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = DefaultRetrySchedule
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = len(c.RetrySchedule) + 1
	}
	if c.ClaimBatch == 0 {
		c.ClaimBatch = 500
	}
	def(&c.RetryMax, 10*time.Hour)
	def(&c.LaneIdle, 5*time.Minute)
	def(&c.BreakerCooldown, 30*time.Second)
	def(&c.DisableAfter, 120*time.Hour)
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
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
	check(c.LaneIdle >= time.Second, "ECS_WORKER_LANE_IDLE must be at least 1s")
	check(c.MaxAttempts >= 1 && c.MaxAttempts <= 100, "ECS_WORKER_MAX_ATTEMPTS must be between 1 and 100")
	check(len(c.RetrySchedule) <= 50, "ECS_WORKER_RETRY_SCHEDULE must have at most 50 steps")
	for _, d := range c.RetrySchedule {
		if d < time.Millisecond || d > 7*24*time.Hour {
			errs = append(errs, errors.New("ECS_WORKER_RETRY_SCHEDULE steps must be from 1ms to 168h"))
			break
		}
	}
	check(c.RetryMax >= time.Second, "ECS_WORKER_RETRY_MAX must be at least 1s")
	check(c.BreakerFailures >= -1, "ECS_WORKER_BREAKER_FAILURES must not be negative")
	check(c.BreakerCooldown >= 10*time.Millisecond, "ECS_WORKER_BREAKER_COOLDOWN must be at least 10ms")
	check(c.DisableAfter < 0 || c.DisableAfter >= time.Second, "ECS_WORKER_DISABLE_AFTER must be 0 (never) or at least 1s")
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

// DefaultRetrySchedule is the wait after each failed attempt: after the first
// attempt (made at once), about 5s, 5m, 30m, 2h, 5h, 10h and 10h.
var DefaultRetrySchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// RetryDelay is the wait after the given number of failed attempts (1 = after
// the first): schedule's step, or the last step past its end, with ±20%
// jitter. A nil schedule is the worker's.
func (c Config) RetryDelay(failed int, schedule []time.Duration) time.Duration {
	if len(schedule) == 0 {
		schedule = c.RetrySchedule
	}
	d := schedule[min(max(failed, 1), len(schedule))-1]
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
