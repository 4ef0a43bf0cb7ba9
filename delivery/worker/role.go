package worker

import (
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Role is the worker process, configured from ECS_WORKER_* variables. The
// ecs-worker binary and the load generator's worker child both run it.
func Role() role.Spec {
	return role.OneService("ecs-worker", ":9092", true, LoadConfig, func(cfg Config, d role.Deps) (service.Service, error) {
		return New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
	})
}
