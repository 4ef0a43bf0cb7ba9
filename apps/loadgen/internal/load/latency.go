// Package load generates traffic and measures it: closed-loop and paced
// drivers, latency summaries, an HTTP client for the API, and a webhook
// receiver that records when each delivery arrived.
package load

import (
	"fmt"
	"slices"
	"time"
)

// Summary is a latency histogram reduced to the figures the report shows.
// Percentiles are exact (nearest rank over every sample), not bucketed.
type Summary struct {
	N                        int
	Mean, P50, P90, P99, Max time.Duration
}

// Summarize sorts d in place and summarises it.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Summary{N: len(d), Mean: sum / time.Duration(len(d)),
		P50: rank(d, 0.50), P90: rank(d, 0.90), P99: rank(d, 0.99), Max: d[len(d)-1]}
}

// rank is the nearest-rank percentile of sorted d.
func rank(d []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// String formats the summary in milliseconds.
func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)", Ms(s.P50), Ms(s.P90), Ms(s.P99), Ms(s.Max), s.N)
}

// Ms formats d as milliseconds with sensible precision.
func Ms(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}
