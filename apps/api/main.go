// Command ecs-api serves the REST API. Configuration comes from ECS_* variables
// (see the README); "ecs-api migrate" applies the database migrations and exits.
package main

import (
	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/role"
)

func main() { role.Main(api.Role()) }
