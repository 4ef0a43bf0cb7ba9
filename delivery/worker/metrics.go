package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type workerMetrics struct {
	consumed        prometheus.Counter
	created         prometheus.Counter
	attempts        *prometheus.CounterVec
	dead            prometheus.Counter
	attemptDuration prometheus.Histogram
	overflow        prometheus.Counter
	claimed         prometheus.Counter
	postponed       prometheus.Counter
	breakerOpen     prometheus.Counter
	disabled        prometheus.Counter
}

// newMetrics registers the worker's collectors on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer) *workerMetrics {
	f := promauto.With(reg)
	return &workerMetrics{
		consumed: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_records_consumed_total", Help: "Event records consumed from Kafka."}),
		created: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_deliveries_created_total", Help: "Deliveries created (new dedup keys)."}),
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecs_worker_attempts_total", Help: "Webhook attempts by result (success, failure)."}, []string{"result"}),
		dead: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_dead_letters_total", Help: "Deliveries that exhausted their attempts."}),
		attemptDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name: "ecs_worker_attempt_duration_seconds", Help: "Webhook attempt latency.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		overflow: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_lane_overflow_total", Help: "Deliveries left to the poller because their lane was full."}),
		claimed: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_deliveries_claimed_total", Help: "Due or orphaned deliveries claimed by the poller."}),
		postponed: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_deliveries_postponed_total", Help: "Deliveries handed back without an attempt because their endpoint's circuit breaker was open."}),
		breakerOpen: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_breaker_trips_total", Help: "Times an endpoint's circuit breaker opened."}),
		disabled: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_worker_subscriptions_disabled_total", Help: "Subscriptions the worker disabled (410 Gone, or failing for ECS_WORKER_DISABLE_AFTER)."}),
	}
}
