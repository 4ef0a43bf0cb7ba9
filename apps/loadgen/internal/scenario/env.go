// Package scenario holds the benchmark scenarios of issue 5 and runs them
// against a rig: each measures a figure of the platform and, in the same run,
// the ceiling the dependencies allow for the same work.
package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/rig"
)

// Config tunes a run.
type Config struct {
	// Quick shortens every measurement so the whole run takes under two
	// minutes (default false: the full run).
	Quick bool
	// Scenarios to run, by number (default: all, 1 to 7).
	Scenarios []int
	// Warm and Window are the warm-up and the measured interval of each
	// measurement (default 2s and 10s; quick 0.5s and 2s).
	Warm, Window time.Duration
	// RelayRows is how many outbox rows scenario 3 drains (default 1,000,000;
	// quick 100,000).
	RelayRows int
	// HistoryRows is how many stored events the ingest scenarios start from
	// (default 300,000; quick 100,000).
	HistoryRows int
	// ProfileDir, when set, receives CPU and allocation profiles of the roles
	// taken during the measured windows (default: none).
	ProfileDir string
	// Brokers are external Kafka brokers (default: embedded kfake).
	Brokers []string
	// RoleEnv are extra ECS_* variables per role.
	RoleEnv map[string][]string
	// Command is the command line, for the report.
	Command string
	// Log receives progress (default: discard).
	Log *slog.Logger
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if len(c.Scenarios) == 0 {
		c.Scenarios = []int{1, 2, 3, 4, 5, 6, 7}
	}
	if c.Warm == 0 {
		c.Warm = 2 * time.Second
		if c.Quick {
			c.Warm = 500 * time.Millisecond
		}
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
		if c.Quick {
			c.Window = 2 * time.Second
		}
	}
	if c.RelayRows == 0 {
		c.RelayRows = 1_000_000
		if c.Quick {
			c.RelayRows = 100_000
		}
	}
	if c.HistoryRows == 0 {
		c.HistoryRows = 300_000
		if c.Quick {
			c.HistoryRows = 100_000
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	for _, id := range c.Scenarios {
		if byID(id) == nil {
			return fmt.Errorf("scenario %d does not exist (1 to 7)", id)
		}
	}
	if c.Window < time.Second {
		return errors.New("the measured window must be at least 1s")
	}
	if c.Warm < 0 {
		return errors.New("the warm-up must not be negative")
	}
	if c.HistoryRows < 1000 || c.HistoryRows > 10_000_000 {
		return errors.New("history rows must be between 1,000 and 10,000,000")
	}
	if c.RelayRows < 1000 || c.RelayRows > 10_000_000 {
		return errors.New("relay rows must be between 1,000 and 10,000,000")
	}
	return nil
}

// Env is what a scenario runs against.
type Env struct {
	Cfg  Config
	Rig  *rig.Rig
	Recv *load.Receiver
	Log  *slog.Logger

	client     *load.Client
	clientBase string
	// ceiling is the receiver's bare HTTP capacity, measured once per run.
	ceiling *report.Row
	// seeded is set once the event history is in place (reset).
	seeded bool
	// pgbenchRuns numbers pgbench runs, so their keys never collide.
	pgbenchRuns int
}

// Client is an API client for the API process running now.
func (e *Env) Client() *load.Client {
	if base := e.Rig.APIBase(); base != e.clientBase {
		if e.client != nil {
			e.client.Close()
		}
		e.client, e.clientBase = load.NewClient(base, e.Rig.Token, 256), base
	}
	return e.client
}

func (e *Env) close() {
	if e.client != nil {
		e.client.Close()
	}
}

// schema is the JSON Schema of every benchmark event type, so the API
// validates each event as it would in production.
var schema = json.RawMessage(`{"type":"object","required":["order_id","amount"],"properties":{` +
	`"order_id":{"type":"integer"},"amount":{"type":"number"},"currency":{"type":"string"},` +
	`"customer":{"type":"string"},"items":{"type":"integer"}}}`)

// eventType creates a benchmark event type and returns its version.
func (e *Env) eventType(ctx context.Context, name string) (int, error) {
	return e.Client().EventType(ctx, name, schema)
}

// reset brings the event tables to the same steady state before every
// ingest measurement: a history of stored events (seeded once, so indexes have
// production-like depth and the planner production-like statistics), an
// empty outbox (as a relay keeps it), vacuumed, analysed and checkpointed.
// Starting from empty tables instead would measure query plans made for tiny
// tables, which PostgreSQL keeps using as the tables grow until the next
// ANALYZE.
func (e *Env) reset(ctx context.Context) error {
	if !e.seeded {
		if err := e.seedHistory(ctx); err != nil {
			return err
		}
		e.seeded = true
	}
	for _, s := range []string{`TRUNCATE outbox`, `VACUUM ANALYZE events, idempotency_keys, key_sequences, outbox`, `CHECKPOINT`} {
		if _, err := e.Rig.Pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("reset: %s: %w", s, err)
		}
	}
	return nil
}

// seedHistory stores HistoryRows already-relayed events of scenario 1's shape,
// each with its idempotency key and key sequence.
func (e *Env) seedHistory(ctx context.Context) error {
	t := time.Now()
	if _, err := e.eventType(ctx, "bench.history"); err != nil {
		return fmt.Errorf("seed history: %w", err)
	}
	const chunk = 100_000
	for from := 1; from <= e.Cfg.HistoryRows; from += chunk {
		to := min(from+chunk-1, e.Cfg.HistoryRows)
		_, err := e.Rig.Pool.Exec(ctx, `WITH e AS (
    INSERT INTO events (id, type, key, key_seq, data)
    SELECT ecs_uuidv7(), 'bench.history', 'h-o-' || g, 1,
           ('{"order_id":' || g || ',"amount":42.5,"currency":"EUR","customer":"c-' || (g % 1000) || '","items":3}')::json
    FROM generate_series($1::bigint, $2::bigint) g
    ORDER BY g
    RETURNING id, key
), k AS (
    INSERT INTO key_sequences (key, seq) SELECT key, 1 FROM e
)
INSERT INTO idempotency_keys (key, request_hash, event_id) SELECT 'h-i-' || substr(key, 5), sha256(key::bytea), id FROM e`, from, to)
		if err != nil {
			return fmt.Errorf("seed history: %w", err)
		}
	}
	e.Log.Info("seeded event history", "rows", e.Cfg.HistoryRows, "took", time.Since(t).Round(time.Millisecond))
	return nil
}

// profile takes, when profiling is on, a CPU profile of each named role for d
// starting after delay, then its allocation profile. The returned func waits
// for them and returns the files written.
func (e *Env) profile(ctx context.Context, tag string, delay, d time.Duration, names ...string) func() []string {
	if e.Cfg.ProfileDir == "" {
		return func() []string { return nil }
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		files []string
	)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	for _, name := range names {
		p := e.Rig.Proc(name)
		if p == nil {
			continue
		}
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			base := filepath.Join(e.Cfg.ProfileDir, tag+"-"+name)
			for _, f := range []struct{ path, file string }{
				{"/debug/pprof/profile?seconds=" + strconv.Itoa(secs), base + "-cpu.pprof"},
				{"/debug/pprof/allocs", base + "-allocs.pprof"},
			} {
				if err := fetch(ctx, "http://"+p.PprofAddr+f.path, f.file); err != nil {
					e.Log.Warn("profile failed", "role", name, "error", err)
					continue
				}
				mu.Lock()
				files = append(files, f.file)
				mu.Unlock()
			}
		})
	}
	return func() []string { wg.Wait(); return files }
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuMeter measures the CPU time processes use over an interval.
type cpuMeter struct {
	start time.Time
	procs map[string]func() (time.Duration, error)
	base  map[string]time.Duration
}

// meter starts measuring the named roles, the broker (when embedded) and
// PostgreSQL (the postmaster and its backends).
func (e *Env) meter(names ...string) *cpuMeter {
	m := &cpuMeter{start: time.Now(), procs: map[string]func() (time.Duration, error){}, base: map[string]time.Duration{}}
	for _, n := range names {
		if p := e.Rig.Proc(n); p != nil {
			m.procs[n] = func() (time.Duration, error) { u, err := p.Usage(); return u.CPU, err }
		}
	}
	if k := e.Rig.Kafka(); k != nil {
		m.procs["kafka"] = func() (time.Duration, error) { u, err := k.Usage(); return u.CPU, err }
	}
	if pid, err := e.Rig.PostgresPID(); err == nil {
		m.procs["postgres"] = func() (time.Duration, error) { return rig.TreeCPU(pid) }
	}
	m.procs["loadgen"] = func() (time.Duration, error) { u, err := rig.SelfUsage(); return u.CPU, err }
	for n, f := range m.procs {
		if v, err := f(); err == nil {
			m.base[n] = v
		}
	}
	return m
}

// stop returns the CPU time each process used since meter, and the interval.
func (m *cpuMeter) stop() (map[string]time.Duration, time.Duration) {
	out := map[string]time.Duration{}
	for n, f := range m.procs {
		if v, err := f(); err == nil {
			out[n] = v - m.base[n]
		}
	}
	return out, time.Since(m.start)
}

// cpuNote formats CPU use per process as cores busy on average.
func cpuNote(what string, used map[string]time.Duration, over time.Duration) string {
	s := "CPU during " + what + " (cores busy on average):"
	for _, n := range []string{"api", "relay", "worker", "kafka", "postgres", "loadgen"} {
		if v, ok := used[n]; ok {
			s += fmt.Sprintf(" %s %.2f,", n, v.Seconds()/over.Seconds())
		}
	}
	return s[:len(s)-1] + "."
}
