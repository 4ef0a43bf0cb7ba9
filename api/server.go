package api

import (
	"context"
	"log/slog"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
)

// Mount adds the API's /v1 routes to e, an engine from platform/http.NewEngine
// that already serves the operational endpoints. topic names an event type's
// Kafka topic; ctx bounds background work and should live as long as the server.
func Mount(ctx context.Context, e *gin.Engine, cfg Config, pool *pgxpool.Pool, topic func(string) string, log *slog.Logger) error {
	a, err := New(ctx, cfg, pool, outbox.NewStore(pool, topic), delivery.NewStore(pool), log)
	if err != nil {
		return err
	}
	a.routes(e)
	return nil
}
