package http

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const requestIDKey = "ecs.request_id"

// RequestIDHeader carries a request id in and out; a valid incoming one is kept so
// ids follow a request across services.
const RequestIDHeader = "X-Request-Id"

func init() { gin.SetMode(gin.ReleaseMode) }

// NewEngine returns a gin engine with request ids, access logging, request
// metrics on reg (nil: none), panic recovery into a 500 problem, and problem
// documents for unknown routes and methods.
func NewEngine(log *slog.Logger, reg prometheus.Registerer) *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	duration := promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ecs_http_request_duration_seconds",
		Help:    "HTTP request latency by route, method and status.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "method", "status"})
	e.Use(requestID(), accessLog(log, duration), recovery(log))
	e.NoRoute(func(c *gin.Context) {
		WriteProblem(c, NewProblem(http.StatusNotFound, "", "no route "+c.Request.Method+" "+c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		WriteProblem(c, NewProblem(http.StatusMethodNotAllowed, "", "method "+c.Request.Method+" is not allowed here"))
	})
	return e
}

// RequestID returns the request id of c.
func RequestID(c *gin.Context) string { return c.GetString(requestIDKey) }

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if len(id) == 0 || len(id) > 128 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Set(requestIDKey, id)
		c.Header(RequestIDHeader, id)
		c.Next()
	}
}

func accessLog(log *slog.Logger, duration *prometheus.HistogramVec) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
		route := c.FullPath()
		if route == "" {
			route = "unmatched" // never label by raw path: unbounded cardinality
		}
		duration.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		lvl := slog.LevelDebug
		if status >= 500 {
			lvl = slog.LevelError
		} else if status >= 400 {
			lvl = slog.LevelInfo
		}
		log.LogAttrs(c.Request.Context(), lvl, "http request",
			slog.String("request_id", RequestID(c)),
			slog.String("method", c.Request.Method),
			slog.String("route", c.FullPath()),
			slog.Int("status", status),
			slog.Duration("duration", time.Since(start)),
		)
	}
}

func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				log.Error("panic in handler", "request_id", RequestID(c), "panic", fmt.Sprint(r))
				WriteProblem(c, NewProblem(http.StatusInternalServerError, "", "internal error"))
			}
		}()
		c.Next()
	}
}
