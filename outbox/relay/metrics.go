package relay

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type relayMetrics struct {
	produced      prometheus.Counter
	errors        prometheus.Counter
	leader        prometheus.Gauge
	batchDuration prometheus.Histogram
}

// newMetrics registers the relay's collectors on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer) *relayMetrics {
	f := promauto.With(reg)
	return &relayMetrics{
		produced: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_relay_records_produced_total", Help: "Outbox rows produced to Kafka and removed."}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "ecs_relay_batch_errors_total", Help: "Relay batches that failed and were retried."}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecs_relay_leader", Help: "1 while this relay holds the lead."}),
		batchDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name: "ecs_relay_batch_duration_seconds", Help: "Time to read, produce and remove one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
	}
}
