package api

import (
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Role is the api process: the REST API from ECS_API_* variables. The ecs-api
// binary and the load generator's api child both run it.
func Role() role.Spec {
	var cfg Config
	return role.Spec{
		Name:        "ecs-api",
		DefaultAddr: ":8080",
		Load: func(e *config.Env) error {
			cfg = LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			return nil, Mount(d.Ctx, d.Engine, cfg, d.Pool, d.Kafka.Topic, d.Log)
		},
	}
}
