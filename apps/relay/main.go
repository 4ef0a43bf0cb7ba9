// Command ecs-relay moves outbox rows to Kafka. Run two or more for availability:
// one leads, the others stand by. Configuration comes from ECS_* variables (see
// the README); "ecs-relay migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

func main() {
	var cfg relay.Config
	role.Main(role.Spec{
		Name:        "ecs-relay",
		DefaultAddr: ":9091",
		NeedKafka:   true,
		Load: func(e *config.Env) error {
			cfg = relay.LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			r, err := relay.New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
			return []service.Service{r}, err
		},
	})
}
