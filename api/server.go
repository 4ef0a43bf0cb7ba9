package api

import (
	"log/slog"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
)

// Mount adds the API's /v1 routes to e, an engine from platform/http.NewEngine
// that already serves the operational endpoints. topic names an event type's
// Kafka topic.
func Mount(e *gin.Engine, cfg Config, pool *pgxpool.Pool, topic func(string) string, log *slog.Logger) error {
	a, err := New(cfg, outbox.NewStore(pool, topic), delivery.NewStore(pool), log)
	if err != nil {
		return err
	}
	a.routes(e)
	return nil
}
