package http

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventconfigservice/ecs/platform/metrics"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// MountOps adds /healthz (the process is alive), /readyz (every check passes
// within 2 s) and /metrics (reg) to e.
func MountOps(e *gin.Engine, reg *prometheus.Registry, checks map[string]Check) {
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		res := gin.H{}
		ok := true
		for name, check := range checks {
			if err := check(ctx); err != nil {
				res[name] = err.Error()
				ok = false
			} else {
				res[name] = "ok"
			}
		}
		if !ok {
			p := NewProblem(http.StatusServiceUnavailable, "not-ready", "a dependency is unreachable")
			c.Header("Content-Type", ProblemContentType)
			c.AbortWithStatusJSON(p.Status, gin.H{"type": p.Type, "title": p.Title, "status": p.Status, "detail": p.Detail, "checks": res})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": res})
	})
	h := metrics.Handler(reg)
	e.GET("/metrics", gin.WrapH(h))
}
