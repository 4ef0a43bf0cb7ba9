// Command ecs-api serves the REST API. Configuration comes from ECS_* variables
// (see the README); "ecs-api migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

func main() {
	var cfg api.Config
	role.Main(role.Spec{
		Name:        "ecs-api",
		DefaultAddr: ":8080",
		Load: func(e *config.Env) error {
			cfg = api.LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			return nil, api.Mount(d.Ctx, d.Engine, cfg, d.Pool, d.Kafka.Topic, d.Log)
		},
	})
}
