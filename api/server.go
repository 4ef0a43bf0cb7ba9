package api

import (
	"log/slog"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// Handler builds the API's whole HTTP handler: /v1, /healthz, /readyz and
// /metrics. topic names an event type's Kafka topic.
func Handler(cfg Config, pool *pgxpool.Pool, topic func(string) string, log *slog.Logger, reg *prometheus.Registry) (*gin.Engine, error) {
	a, err := New(cfg, outbox.NewStore(pool, topic), delivery.NewStore(pool), log)
	if err != nil {
		return nil, err
	}
	e := ecshttp.NewEngine(log, reg)
	ecshttp.MountOps(e, reg, map[string]ecshttp.Check{"postgres": pool.Ping})
	a.Mount(e)
	return e, nil
}
