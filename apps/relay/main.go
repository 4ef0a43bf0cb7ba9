// Command ecs-relay moves outbox rows to Kafka. Run two or more for availability:
// one leads, the others stand by. Configuration comes from ECS_* variables (see
// the README); "ecs-relay migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/role"
)

func main() { role.Main(relay.Role()) }
