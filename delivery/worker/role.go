package worker

import (
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Role is the worker process, configured from ECS_WORKER_* variables. The
// ecs-worker binary and the load generator's worker child both run it.
func Role() role.Spec {
	var cfg Config
	return role.Spec{
		Name:        "ecs-worker",
		DefaultAddr: ":9092",
		NeedKafka:   true,
		Load: func(e *config.Env) error {
			cfg = LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			w, err := New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
			return []service.Service{w}, err
		},
	}
}
