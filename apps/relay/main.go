// Command ecs-relay moves outbox rows to Kafka. Run two or more for availability:
// one leads, the others stand by. Configuration comes from ECS_* variables (see
// the README); "ecs-relay migrate" applies the database migrations and exits.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/db"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
	"github.com/eventconfigservice/ecs/platform/metrics"
	"github.com/eventconfigservice/ecs/platform/service"
	"github.com/eventconfigservice/ecs/schema"
)

const name = "ecs-relay"

func main() {
	migrate := service.Command(name)
	env := config.FromOS()
	common := config.LoadCommon(env, ":9091")
	rcfg := relay.LoadConfig(env)
	kcfg := kafka.LoadConfig(env).WithDefaults()
	if err := errors.Join(env.Err(), common.Validate(true, !migrate), rcfg.WithDefaults().Validate()); err != nil {
		service.Fatal(name, err)
	}
	log := logging.New(os.Stderr, common.LogLevel, common.LogFormat)
	ctx := context.Background()
	if migrate {
		if err := schema.MigrateURL(ctx, common.DatabaseURL); err != nil {
			service.Fatal(name, err)
		}
		log.Info("database migrated")
		return
	}
	pool, err := db.Open(ctx, db.PoolConfig{URL: common.DatabaseURL, MaxConns: int32(common.DatabaseMaxConns), ApplicationName: name})
	if err != nil {
		service.Fatal(name, err)
	}
	reg := metrics.NewRegistry()
	r, err := relay.New(rcfg, kcfg, pool, log, reg)
	if err != nil {
		service.Fatal(name, err)
	}
	probe, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		service.Fatal(name, err)
	}
	e := ecshttp.NewEngine(log, reg)
	ecshttp.MountOps(e, reg, map[string]ecshttp.Check{
		"postgres": pool.Ping,
		"kafka":    func(ctx context.Context) error { return kafka.Ping(ctx, probe) },
	})
	srv, err := ecshttp.Listen(common.HTTPAddr, e, log)
	if err != nil {
		service.Fatal(name, err)
	}
	log.Info("relay ops endpoints listening", "addr", srv.Addr())
	if err := service.Run(log, []service.Service{srv, r}, func() { probe.Close(); pool.Close() }); err != nil {
		service.Fatal(name, err)
	}
}
