package scenario

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/rig"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
)

// scenario is one entry of the catalogue.
type scenario struct {
	id    int
	title string
	// roles must run (and only they) while the scenario runs.
	roles []string
	run   func(ctx context.Context, e *Env, sc *report.Scenario) error
}

// catalogue lists the scenarios in the order they run: those that need only
// the API first, then the relay drain, then those that need every role, idle
// last.
var catalogue = []scenario{
	{1, "Ingest, single events", []string{roles.API}, ingest},
	{5, "The cost of NOTIFY", []string{roles.API}, notifyCost},
	{2, "Ingest, batches", []string{roles.API}, batches},
	{3, "Relay drain", []string{roles.API}, relayDrain},
	{4, "End to end", []string{roles.API, roles.Worker, roles.Relay}, endToEnd},
	{6, "Fan-out", []string{roles.API, roles.Worker, roles.Relay}, fanOut},
	{7, "Idle cost", []string{roles.API, roles.Worker, roles.Relay}, idle},
}

func byID(id int) *scenario {
	for i := range catalogue {
		if catalogue[i].id == id {
			return &catalogue[i]
		}
	}
	return nil
}

// Run sets up a rig, runs the chosen scenarios and tears everything down. A
// scenario that fails is reported with its error; the others still run.
func Run(ctx context.Context, cfg Config) (report.Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return report.Report{}, err
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return report.Report{}, fmt.Errorf("profile directory: %w", err)
		}
	}
	rep := report.Report{Mode: "full", Command: cfg.Command, Started: time.Now(), Machine: report.ReadMachine()}
	if cfg.Quick {
		rep.Mode = "quick"
	}
	log := cfg.Log
	r, err := rig.Start(ctx, rig.Config{Brokers: cfg.Brokers, RoleEnv: cfg.RoleEnv, Log: log})
	if err != nil {
		return rep, err
	}
	defer r.Close(context.WithoutCancel(ctx))
	recv, err := load.StartReceiver()
	if err != nil {
		return rep, err
	}
	defer recv.Close(context.WithoutCancel(ctx))
	e := &Env{Cfg: cfg, Rig: r, Recv: recv, Log: log}
	defer e.close()

	var pgVersion string
	if err := r.Pool.QueryRow(ctx, `SHOW server_version`).Scan(&pgVersion); err != nil {
		return rep, err
	}
	rep.Machine.Postgres, rep.Machine.Pgbench = pgVersion, pgbenchVersion(ctx)
	rep.Machine.Kafka = r.KafkaNote
	if len(cfg.Brokers) == 0 {
		rep.Machine.Kafka += ", franz-go kfake " + moduleVersion("github.com/twmb/franz-go/pkg/kfake")
	}
	rep.Setup = []string{
		fmt.Sprintf("Warm-up %s and measured window %s per measurement; relay drain of %s rows.", cfg.Warm, cfg.Window, report.Num(float64(cfg.RelayRows))),
		"API: ECS_DATABASE_MAX_CONNS=64 (one connection per concurrent client of scenario 1); every other setting at its default.",
		"Relay and worker: defaults (relay batch 1,000; worker 16 lanes per subscription, 64 connections per subscriber host).",
		"PostgreSQL: localpg defaults (max_connections 200, shared_buffers 128MB, fsync and synchronous_commit on).",
		fmt.Sprintf("Ingest measurements (scenarios 1, 2, 5) start from a stored history of %s events with their idempotency "+
			"records and key sequences (seeded once), an empty outbox (as a running relay keeps it), VACUUM ANALYZE and CHECKPOINT; "+
			"the tables keep what earlier measurements wrote.", report.Num(float64(cfg.HistoryRows))),
	}

	for _, s := range catalogue {
		if !slices.Contains(cfg.Scenarios, s.id) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		sc := report.Scenario{ID: s.id, Title: s.title}
		start := time.Now()
		log.Info("scenario", "id", s.id, "title", s.title)
		err := r.Ensure(ctx, s.roles...)
		if err == nil {
			err = s.run(ctx, e, &sc)
		}
		if err == nil {
			err = recv.Err()
		}
		sc.Err, sc.Took = err, time.Since(start)
		if err != nil {
			log.Warn("scenario failed", "id", s.id, "error", err)
		}
		rep.Scenarios = append(rep.Scenarios, sc)
	}
	rep.Took = time.Since(rep.Started)
	rep.Machine.LoadAfter = report.LoadAvg()
	return rep, ctx.Err()
}

// moduleVersion is the version of a dependency built into this binary.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
