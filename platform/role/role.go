// Package role is the shared start-up of the production binaries: parse the
// ECS_* configuration and refuse to start on a bad value, handle the migrate
// command, open the pool, serve /healthz, /readyz and /metrics, start the role's
// services and stop them on SIGINT/SIGTERM.
package role

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/db"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
	"github.com/eventconfigservice/ecs/platform/metrics"
	"github.com/eventconfigservice/ecs/platform/service"
	"github.com/eventconfigservice/ecs/schema"
)

// Spec describes one role.
type Spec struct {
	// Name prefixes errors and names the database connection ("ecs-relay").
	Name string
	// DefaultAddr is the ECS_HTTP_ADDR default.
	DefaultAddr string
	// NeedKafka makes ECS_KAFKA_BROKERS required and adds Kafka to /readyz.
	NeedKafka bool
	// Load reads and validates the role's own settings.
	Load func(e *config.Env) error
	// Build makes the role's services once the shared parts exist; they are
	// started after the HTTP server, in order, and stopped in reverse.
	Build func(d Deps) ([]service.Service, error)
}

// Settings is a role's own configuration: defaults filled, then validated.
type Settings[C any] interface {
	WithDefaults() C
	Validate() error
}

// OneService is the Spec of a role that runs one service made from settings
// loaded from the environment (the relay, the worker).
func OneService[C Settings[C]](name, addr string, needKafka bool, load func(*config.Env) C,
	build func(C, Deps) (service.Service, error)) Spec {
	var cfg C
	return Spec{
		Name: name, DefaultAddr: addr, NeedKafka: needKafka,
		Load: func(e *config.Env) error {
			cfg = load(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d Deps) ([]service.Service, error) {
			svc, err := build(cfg, d)
			return []service.Service{svc}, err
		},
	}
}

// Deps is what Build gets.
type Deps struct {
	// Ctx lives as long as the process serves.
	Ctx    context.Context
	Env    *config.Env
	Kafka  kafka.Config
	Log    *slog.Logger
	Pool   *pgxpool.Pool
	Reg    *prometheus.Registry
	Engine *gin.Engine
}

// Main runs the role; it returns only after a clean stop and exits 1 with one
// line on stderr otherwise.
func Main(spec Spec) {
	migrate := service.Command(spec.Name)
	env := config.FromOS()
	common := config.LoadCommon(env, spec.DefaultAddr)
	kcfg := kafka.LoadConfig(env).WithDefaults()
	errs := []error{common.Validate(true, spec.NeedKafka && !migrate)}
	if !migrate {
		errs = append(errs, spec.Load(env))
	}
	if err := errors.Join(append(errs, env.Err())...); err != nil {
		service.Fatal(spec.Name, err)
	}
	log := logging.New(os.Stderr, common.LogLevel, common.LogFormat)
	ctx := context.Background()
	if migrate {
		if err := schema.MigrateURL(ctx, common.DatabaseURL); err != nil {
			service.Fatal(spec.Name, err)
		}
		log.Info("database migrated")
		return
	}
	if err := run(ctx, spec, env, common, kcfg, log); err != nil {
		service.Fatal(spec.Name, err)
	}
}

func run(ctx context.Context, spec Spec, env *config.Env, common config.Common, kcfg kafka.Config, log *slog.Logger) error {
	pool, err := db.Open(ctx, db.PoolConfig{URL: common.DatabaseURL, MaxConns: int32(common.DatabaseMaxConns), ApplicationName: spec.Name})
	if err != nil {
		return err
	}
	cleanup := []func(){pool.Close}
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	reg := metrics.NewRegistry()
	e := ecshttp.NewEngine(log, reg)
	checks := map[string]ecshttp.Check{"postgres": pool.Ping}
	if spec.NeedKafka {
		probe, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
		if err != nil {
			return err
		}
		cleanup = append(cleanup, probe.Close)
		checks["kafka"] = func(ctx context.Context) error { return kafka.Ping(ctx, probe) }
	}
	ecshttp.MountOps(e, reg, checks)
	svcs, err := spec.Build(Deps{Ctx: ctx, Env: env, Kafka: kcfg, Log: log, Pool: pool, Reg: reg, Engine: e})
	if err != nil {
		return err
	}
	srv, err := ecshttp.Listen(common.HTTPAddr, e, log)
	if err != nil {
		return err
	}
	log.Info(spec.Name+" listening", "addr", srv.Addr())
	return service.Run(log, append([]service.Service{srv}, svcs...), nil)
}
