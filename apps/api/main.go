// Command ecs-api serves the REST API. Configuration comes from ECS_* variables
// (see the README); "ecs-api migrate" applies the database migrations and exits.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/db"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
	"github.com/eventconfigservice/ecs/platform/metrics"
	"github.com/eventconfigservice/ecs/platform/service"
	"github.com/eventconfigservice/ecs/schema"
)

const name = "ecs-api"

func main() {
	migrate := service.Command(name)
	env := config.FromOS()
	common := config.LoadCommon(env, ":8080")
	acfg := api.LoadConfig(env)
	kcfg := kafka.LoadConfig(env).WithDefaults()
	if err := errors.Join(env.Err(), common.Validate(true, false), acfg.WithDefaults().Validate()); err != nil && !migrate {
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
	h, err := api.Handler(acfg, pool, kcfg.Topic, log, reg)
	if err != nil {
		service.Fatal(name, err)
	}
	srv, err := ecshttp.Listen(common.HTTPAddr, h, log)
	if err != nil {
		service.Fatal(name, err)
	}
	log.Info("api listening", "addr", srv.Addr())
	if err := service.Run(log, []service.Service{srv}, pool.Close); err != nil {
		service.Fatal(name, err)
	}
}
