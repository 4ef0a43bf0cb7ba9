package http

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

const requestIDKey = "ecs.request_id"

// RequestIDHeader carries a request id in and out; a valid incoming one is kept so
// ids follow a request across services.
const RequestIDHeader = "X-Request-Id"

func init() { gin.SetMode(gin.ReleaseMode) }

// NewEngine returns a gin engine with request ids, access logging, panic recovery
// into a 500 problem, and problem documents for unknown routes and methods.
func NewEngine(log *slog.Logger) *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(requestID(), accessLog(log), recovery(log))
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

func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
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
