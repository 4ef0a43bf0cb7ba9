// Command ecs-worker delivers events to subscribers. Run as many as the event
// topics have partitions; they share the work through a Kafka consumer group.
// Configuration comes from ECS_* variables (see the README); "ecs-worker
// migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

func main() {
	var cfg worker.Config
	role.Main(role.Spec{
		Name:        "ecs-worker",
		DefaultAddr: ":9092",
		NeedKafka:   true,
		Load: func(e *config.Env) error {
			cfg = worker.LoadConfig(e)
			return cfg.WithDefaults().Validate()
		},
		Build: func(d role.Deps) ([]service.Service, error) {
			w, err := worker.New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
			return []service.Service{w}, err
		},
	})
}
