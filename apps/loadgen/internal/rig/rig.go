// Package rig sets up what the benchmarks run against: a local PostgreSQL
// (platform/db/localpg, durable settings, in a temporary directory), Kafka (the
// embedded kfake broker in a child process, or the brokers the caller names),
// and the platform's roles, each in its own child process (package roles),
// started and stopped as each scenario needs them.
package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/db/localpg"
	"github.com/eventconfigservice/ecs/schema"
)

// Config tunes the rig.
type Config struct {
	// Brokers are external Kafka brokers; empty starts kfake in a child process.
	Brokers []string
	// APIMaxConns is the API's pool size (ECS_DATABASE_MAX_CONNS; default 64,
	// one per concurrent client of the ingest scenario).
	APIMaxConns int
	// RoleEnv are extra ECS_* variables per role (e.g. a worker allow-list).
	RoleEnv map[string][]string
	// Log receives progress (default: discard).
	Log *slog.Logger
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.APIMaxConns == 0 {
		c.APIMaxConns = 64
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.APIMaxConns < 2 || c.APIMaxConns > 150 {
		return errors.New("rig: APIMaxConns must be between 2 and 150")
	}
	return nil
}

// Rig is a running test bed.
type Rig struct {
	cfg Config
	dir string
	exe string
	pg  *localpg.Server

	// DBURL locates the database; Pool is the load generator's own pool.
	DBURL string
	Pool  *pgxpool.Pool
	// Brokers are the Kafka seed brokers; KafkaNote says which Kafka it is.
	Brokers   []string
	KafkaNote string
	// Token is the API's static admin token.
	Token string
	// RunID makes topic, group and key names unique to this run.
	RunID string
	// TopicPrefix is the event topics' prefix; the worker consumes every topic
	// under it.
	TopicPrefix string

	kafka *Proc
	procs map[string]*Proc
}

// Start brings up PostgreSQL (migrated) and Kafka. Close undoes it, also when
// Start fails half-way.
func Start(ctx context.Context, cfg Config) (r *Rig, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("rig: own executable: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	r = &Rig{cfg: cfg, exe: exe, procs: map[string]*Proc{}, RunID: hex.EncodeToString(b[:3]), Token: "loadgen-" + hex.EncodeToString(b[:])}
	r.TopicPrefix = "ecs.bench" + r.RunID + "."
	defer func() {
		if err != nil {
			r.Close(context.WithoutCancel(ctx))
			r = nil
		}
	}()
	if r.dir, err = os.MkdirTemp("", "ecs-loadgen-"); err != nil {
		return r, fmt.Errorf("rig: %w", err)
	}
	if err = os.Chmod(r.dir, 0o755); err != nil { // PostgreSQL may run as user postgres
		return r, fmt.Errorf("rig: %w", err)
	}
	t := time.Now()
	r.pg, err = localpg.Start(ctx, localpg.Config{DataDir: filepath.Join(r.dir, "pg"), Database: "ecs", Logger: cfg.Log})
	if err != nil {
		return r, err
	}
	r.DBURL = r.pg.URL()
	if err = schema.MigrateURL(ctx, r.DBURL); err != nil {
		return r, fmt.Errorf("rig: migrate: %w", err)
	}
	if r.Pool, err = db.Open(ctx, db.PoolConfig{URL: r.DBURL, MaxConns: 16, ApplicationName: "ecs-loadgen"}); err != nil {
		return r, err
	}
	cfg.Log.Info("postgres ready", "took", time.Since(t).Round(time.Millisecond))
	if len(cfg.Brokers) > 0 {
		r.Brokers, r.KafkaNote = cfg.Brokers, "external Kafka at "+strings.Join(cfg.Brokers, ",")
		return r, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return r, err
	}
	_, port, _ := strings.Cut(addr, ":")
	env := append(baseEnv(), roles.EnvRole+"="+roles.Kafka, roles.EnvKafkaPort+"="+port)
	if r.kafka, err = spawn(roles.Kafka, r.exe, env, filepath.Join(r.dir, "kafka.log")); err != nil {
		return r, err
	}
	if err = r.kafka.waitReady(ctx, tcpReady(addr)); err != nil {
		return r, err
	}
	r.Brokers, r.KafkaNote = []string{addr}, "embedded kfake (one broker, in its own process)"
	return r, nil
}

// Dir is the rig's scratch directory (removed by Close).
func (r *Rig) Dir() string { return r.dir }

// Kafka is the embedded broker's process, nil with external brokers.
func (r *Rig) Kafka() *Proc { return r.kafka }

// PostgresPID is the postmaster's process id.
func (r *Rig) PostgresPID() (int, error) {
	raw, err := os.ReadFile(filepath.Join(r.dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("rig: postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// Proc returns a running role, or nil.
func (r *Rig) Proc(name string) *Proc { return r.procs[name] }

// APIBase is the API's base URL.
func (r *Rig) APIBase() string { return "http://" + r.procs[roles.API].HTTPAddr }

// Ensure makes exactly the named roles run: it stops the others and starts
// the missing ones (in the order given), waiting until each is ready.
func (r *Rig) Ensure(ctx context.Context, want ...string) error {
	for _, name := range []string{roles.API, roles.Worker, roles.Relay} {
		if p := r.procs[name]; p != nil && !slices.Contains(want, name) {
			if err := r.StopRole(ctx, name); err != nil {
				return err
			}
		}
	}
	for _, name := range want {
		if p := r.procs[name]; p != nil && !p.exited() {
			continue
		}
		if err := r.StartRole(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// StartRole starts one role and waits until its /readyz answers.
func (r *Rig) StartRole(ctx context.Context, name string) error {
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	pprofAddr, err := freeAddr()
	if err != nil {
		return err
	}
	env := append(baseEnv(),
		roles.EnvRole+"="+name,
		roles.EnvPprofAddr+"="+pprofAddr,
		"ECS_HTTP_ADDR="+httpAddr,
		"ECS_DATABASE_URL="+r.DBURL,
		"ECS_KAFKA_BROKERS="+strings.Join(r.Brokers, ","),
		"ECS_KAFKA_TOPIC_PREFIX="+r.TopicPrefix,
		// Outside the prefix, so the worker never consumes it as an event topic.
		"ECS_KAFKA_DLQ_TOPIC=ecs.benchdlq"+r.RunID,
		"ECS_LOG_LEVEL=warn",
		"ECS_LOG_FORMAT=json",
		// The receiver is on loopback, which the outbound guard refuses by default.
		"ECS_OUTBOUND_ALLOW_NETWORKS=127.0.0.0/8",
	)
	switch name {
	case roles.API:
		env = append(env, "ECS_API_TOKENS="+r.Token, "ECS_API_ALLOW_HTTP_URLS=true",
			"ECS_DATABASE_MAX_CONNS="+strconv.Itoa(r.cfg.APIMaxConns))
	case roles.Worker:
		env = append(env, "ECS_WORKER_GROUP=ecs-bench"+r.RunID)
	}
	env = append(env, r.cfg.RoleEnv[name]...)
	p, err := spawn(name, r.exe, env, filepath.Join(r.dir, name+".log"))
	if err != nil {
		return err
	}
	p.HTTPAddr, p.PprofAddr = httpAddr, pprofAddr
	r.procs[name] = p
	if err := p.waitReady(ctx, httpReady(httpAddr)); err != nil {
		return err
	}
	r.cfg.Log.Debug("role ready", "role", name, "pid", p.PID(), "took", time.Since(p.Started).Round(time.Millisecond))
	return nil
}

// StopRole stops one role (SIGTERM, then SIGKILL after 30 s).
func (r *Rig) StopRole(ctx context.Context, name string) error {
	p := r.procs[name]
	if p == nil {
		return nil
	}
	delete(r.procs, name)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return p.stop(ctx)
}

// Close stops every child, PostgreSQL, and removes the scratch directory.
func (r *Rig) Close(ctx context.Context) {
	for _, name := range []string{roles.API, roles.Worker, roles.Relay} {
		if err := r.StopRole(ctx, name); err != nil {
			r.cfg.Log.Warn("stop role", "role", name, "error", err)
		}
	}
	if r.kafka != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := r.kafka.stop(sctx); err != nil {
			r.cfg.Log.Warn("stop kafka", "error", err)
		}
		cancel()
	}
	if r.Pool != nil {
		r.Pool.Close()
	}
	if r.pg != nil {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if err := r.pg.Stop(sctx); err != nil {
			r.cfg.Log.Warn("stop postgres", "error", err)
		}
		cancel()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// baseEnv is the load generator's environment without ECS_* variables, so a
// child sees only the settings the rig gives it.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ECS_") {
			env = append(env, kv)
		}
	}
	return env
}
