// Package report holds the results of a benchmark run and writes them as the
// console summary (ratios) and as docs/benchmarks.md.
package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
)

// Verdict says whether a figure meets its target.
type Verdict int

// Verdicts.
const (
	NA Verdict = iota // no target, or the target does not apply to this setup
	Met
	Missed
)

func (v Verdict) String() string {
	switch v {
	case Met:
		return "met"
	case Missed:
		return "MISSED"
	default:
		return "—"
	}
}

// Check is Met when ok, Missed otherwise.
func Check(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// Row is one measured figure.
type Row struct {
	// Name says what was measured ("POST /v1/events, 64 clients").
	Name  string
	Value float64
	Unit  string
	// CeilingName and Ceiling: what the hardware and dependencies allow for
	// the same work, measured in the same run (Ceiling 0: no ceiling).
	CeilingName string
	Ceiling     float64
	// Target is the goal in words; Verdict whether Value meets it.
	Target  string
	Verdict Verdict
	// Latency is the figure's latency histogram; CeilingLatency the ceiling's.
	Latency        *load.Summary
	CeilingLatency *load.Summary
	// Detail is free text shown beside the figure (e.g. RSS).
	Detail string
}

// Ratio is Value/Ceiling, NaN without a ceiling.
func (r Row) Ratio() float64 {
	if r.Ceiling <= 0 {
		return math.NaN()
	}
	return r.Value / r.Ceiling
}

// Scenario is the outcome of one scenario.
type Scenario struct {
	ID    int
	Title string
	// Method says, in Markdown, what was done and how it was measured.
	Method string
	Rows   []Row
	// Notes are observations (CPU per process, profiles, caveats).
	Notes []string
	// Err is set when the scenario could not finish; Rows then holds only
	// what was measured before.
	Err  error
	Took time.Duration
}

// Report is a whole run.
type Report struct {
	Mode      string // "full" or "quick"
	Command   string
	Started   time.Time
	Took      time.Duration
	Machine   Machine
	Setup     []string // how the platform was configured
	Scenarios []Scenario
}

// Console writes one line per figure: value, ceiling, ratio, target, verdict.
func (r Report) Console(w io.Writer) {
	fmt.Fprintf(w, "ecs loadgen (%s mode, %s, %d cores, %s) took %s\n", r.Mode, r.Machine.CPU, r.Machine.Cores, r.Machine.Kafka, r.Took.Round(time.Second))
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "S%d %s\n", s.ID, s.Title)
		if s.Err != nil {
			fmt.Fprintf(w, "   ERROR: %v\n", s.Err)
		}
		for _, row := range s.Rows {
			line := fmt.Sprintf("   %-46s %14s", row.Name, Num(row.Value)+" "+row.Unit)
			if row.Ceiling > 0 {
				line += fmt.Sprintf(" | ceiling %s %s | ratio %.2f", Num(row.Ceiling), row.Unit, row.Ratio())
			}
			if row.Latency != nil && row.Latency.N > 0 {
				line += fmt.Sprintf(" | p99 %s", load.Ms(row.Latency.P99))
			}
			if row.Detail != "" {
				line += " | " + row.Detail
			}
			if row.Target != "" {
				line += fmt.Sprintf(" | target %s: %s", row.Target, row.Verdict)
			}
			fmt.Fprintln(w, line)
		}
	}
}

// Num formats a figure with thousands separators and sensible precision.
func Num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.Abs(v) >= 100:
		return thousands(int64(math.Round(v)))
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
