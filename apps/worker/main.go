// Command ecs-worker delivers events to subscribers. Run as many as the event
// topics have partitions; they share the work through a Kafka consumer group.
// Configuration comes from ECS_* variables (see the README); "ecs-worker
// migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/platform/role"
)

func main() { role.Main(worker.Role()) }
