package relay

import (
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Role is the relay process, configured from ECS_RELAY_* variables. The
// ecs-relay binary and the load generator's relay child both run it.
func Role() role.Spec {
	var cfg Config
	return role.Spec{
		Name:        "ecs-relay",
		DefaultAddr: ":9091",
		NeedKafka:   true,
		Load: func(e *config.Env) error {
			cfg = LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			r, err := New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
			return []service.Service{r}, err
		},
	}
}
