package scenario

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
)

// ingestClients is the concurrency of scenarios 1 and 5.
const ingestClients = 64

const ingestMethod = `%d HTTP clients in a closed loop each POST /v1/events with a fresh key and
Idempotency-Key (an order event of about 90 bytes of data, validated against a
JSON Schema). Only the api role runs, so the figure is ingest alone (the outbox
grows; nothing drains it). Ceiling: pgbench at %d connections running the same
four statements (outbox/queries.sql: check_event_type, claim_idempotency_key,
next_key_seq, publish) in one pipeline, one implicit transaction per event,
-M prepared, against the same server. The API's relay wake-up (a NOTIFY sent
after the commit, shared by concurrent requests: outbox/wake.go) is part of
the figure, not of the ceiling; scenario 5 measures what it costs. Both
measurements start from the same state (see "Setup": stored history, empty
outbox, vacuumed, analysed, checkpointed).`

func ingest(ctx context.Context, e *Env, sc *report.Scenario) error {
	sc.Method = fmt.Sprintf(ingestMethod, ingestClients, ingestClients)
	const typ = "bench.ingest"
	version, err := e.eventType(ctx, typ)
	if err != nil {
		return err
	}
	if err := e.reset(ctx); err != nil {
		return err
	}
	cl := e.Client()
	var seq atomic.Int64
	op := func(ctx context.Context, w int) (int, error) {
		n := seq.Add(1)
		key, idem := names("s1", n)
		code, raw, err := cl.Post(ctx, "/v1/events", singleEvent(nil, typ, key, n), api.IdempotencyKeyHeader, idem)
		if err != nil {
			return 0, err
		}
		if code != http.StatusAccepted {
			return 0, fmt.Errorf("POST /v1/events: status %d: %.200s", code, raw)
		}
		return 1, nil
	}
	wait := e.profile(ctx, "s1", e.Cfg.Warm, e.Cfg.Window, roles.API)
	m := e.meter(roles.API)
	res := load.Closed(ctx, ingestClients, e.Cfg.Warm, e.Cfg.Window, op)
	used, over := m.stop()
	files := wait()
	if res.Errors > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d requests failed in the window; the first: %v", res.Errors, res.FirstErr))
	}
	sc.Notes = append(sc.Notes, cpuNote("the API run", used, over))

	if err := e.reset(ctx); err != nil {
		return err
	}
	m = e.meter()
	pg, err := e.runPgbench(ctx, "ingest", pgbenchScript(typ, version, false), ingestClients, "")
	if err != nil {
		return err
	}
	used, over = m.stop()
	sc.Notes = append(sc.Notes, cpuNote("the pgbench run", used, over)+fmt.Sprintf(" pgbench itself used %.2f.", pg.CPU.Seconds()/over.Seconds()))

	lat, clat := res.Latency, pg.Latency
	sc.Rows = append(sc.Rows,
		report.Row{
			Name: "POST /v1/events, 64 clients", Value: res.Rate(), Unit: "events/s",
			CeilingName: "pgbench, same statements, 64 connections", Ceiling: pg.Rate(),
			Target:  "≥ 0.70 × ceiling",
			Verdict: report.Check(res.Errors == 0 && res.Rate() >= 0.7*pg.Rate()),
			Latency: &lat, CeilingLatency: &clat,
		},
		report.Row{
			Name: "POST /v1/events p99 latency, 64 clients", Value: float64(lat.P99.Microseconds()) / 1000, Unit: "ms",
			Target: "p99 < 20 ms", Verdict: report.Check(lat.N > 0 && lat.P99.Milliseconds() < 20),
		},
	)
	sc.Notes = append(sc.Notes, profileNote(files)...)
	return nil
}

func profileNote(files []string) []string {
	if len(files) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("Profiles: %v.", files)}
}
