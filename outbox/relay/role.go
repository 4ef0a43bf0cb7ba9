package relay

import (
	"github.com/eventconfigservice/ecs/platform/role"
	"github.com/eventconfigservice/ecs/platform/service"
)

// Role is the relay process, configured from ECS_RELAY_* variables. The
// ecs-relay binary and the load generator's relay child both run it.
func Role() role.Spec {
	return role.OneService("ecs-relay", ":9091", true, LoadConfig, func(cfg Config, d role.Deps) (service.Service, error) {
		return New(cfg, d.Kafka, d.Pool, d.Log, d.Reg)
	})
}
