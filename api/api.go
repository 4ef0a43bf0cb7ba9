// Package api is the REST API: gin handlers that validate input, call the outbox
// and delivery stores, and map domain errors to RFC 9457 problem documents.
// Handlers stay thin; what they store and how is the stores' business.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/sender"
	"github.com/eventconfigservice/ecs/docs"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/config"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// Config tunes the API.
type Config struct {
	// Tokens are bearer tokens with every scope (ECS_API_TOKENS,
	// comma-separated): the way in before any API key exists.
	Tokens []string
	// JWTHS256Secret verifies HS256 JWTs (ECS_API_JWT_HS256_SECRET, at least 32
	// bytes); JWTJWKSURL serves the keys of RS256/ES256 JWTs
	// (ECS_API_JWT_JWKS_URL). With either, JWTIssuer and JWTAudience are
	// required (ECS_API_JWT_ISSUER, ECS_API_JWT_AUDIENCE).
	JWTHS256Secret string
	JWTJWKSURL     string
	JWTIssuer      string
	JWTAudience    string
	// KafkaBrokers, when set, let GET /v1/dead-letters read the dead-letter
	// topic DLQTopic (ECS_KAFKA_BROKERS, ECS_KAFKA_DLQ_TOPIC); the API needs
	// Kafka for nothing else.
	KafkaBrokers []string
	DLQTopic     string
	// AllowHTTPURLs accepts http:// subscription URLs; off, https is required
	// (ECS_API_ALLOW_HTTP_URLS, default false; the dev app turns it on).
	AllowHTTPURLs bool
	// SecretOverlap is how long a rotated-out secret keeps signing beside the
	// new one unless the request says otherwise
	// (ECS_API_SECRET_ROTATION_OVERLAP, default 24h).
	SecretOverlap time.Duration
	// MaxBodyBytes bounds a request body (ECS_API_MAX_BODY_BYTES, default 1 MiB).
	MaxBodyBytes int64
	// MaxBatchBytes bounds a POST /v1/events:batch body
	// (ECS_API_MAX_BATCH_BYTES, default 16 MiB).
	MaxBatchBytes int64
	// Egress says where subscription URLs may point: a URL whose host is or
	// resolves to a private, loopback, link-local or reserved address is
	// refused when saved, and test sends are checked at dial time like the
	// worker's (ECS_OUTBOUND_ALLOW_NETWORKS; default none: only public
	// addresses; the dev app allows loopback).
	Egress egress.Config
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 16 << 20
	}
	if c.DLQTopic == "" {
		c.DLQTopic = "ecs.dlq"
	}
	if c.SecretOverlap == 0 {
		c.SecretOverlap = 24 * time.Hour
	}
	return c
}

// Validate checks c.
func (c Config) Validate() error {
	var errs []error
	jwtOn := c.JWTHS256Secret != "" || c.JWTJWKSURL != ""
	if len(c.Tokens) == 0 && !jwtOn {
		errs = append(errs, errors.New("ECS_API_TOKENS must name at least one token (or configure JWTs)"))
	}
	if c.JWTHS256Secret != "" && len(c.JWTHS256Secret) < 32 {
		errs = append(errs, errors.New("ECS_API_JWT_HS256_SECRET must be at least 32 bytes"))
	}
	if jwtOn && (c.JWTIssuer == "" || c.JWTAudience == "") {
		errs = append(errs, errors.New("ECS_API_JWT_ISSUER and ECS_API_JWT_AUDIENCE are required with JWTs"))
	}
	for _, t := range c.Tokens {
		if len(t) < 16 {
			errs = append(errs, errors.New("ECS_API_TOKENS: every token must be at least 16 characters"))
			break
		}
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("ECS_API_MAX_BODY_BYTES must be at least 1024"))
	}
	if c.MaxBatchBytes < c.MaxBodyBytes {
		errs = append(errs, errors.New("ECS_API_MAX_BATCH_BYTES must be at least ECS_API_MAX_BODY_BYTES"))
	}
	return errors.Join(errs...)
}

// API holds the handlers' dependencies.
type API struct {
	cfg        Config
	outbox     *outbox.Store
	deliveries *delivery.Store
	log        *slog.Logger
	authn      *authenticator
	pool       *pgxpool.Pool
	sender     *sender.Sender // for POST /v1/subscriptions/{id}/test
	egress     *egress.Guard  // checks subscription URLs when they are saved
}

// New returns the API. ctx bounds background work (JWKS refreshes).
func New(ctx context.Context, cfg Config, pool *pgxpool.Pool, ob *outbox.Store, ds *delivery.Store, log *slog.Logger) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	authn, err := newAuthenticator(ctx, cfg, pool)
	if err != nil {
		return nil, err
	}
	if err := delivery.EnsureEventTypes(ctx, ob); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return &API{cfg: cfg, outbox: ob, deliveries: ds, log: log.With("component", "api"), authn: authn, pool: pool,
		sender: sender.New(sender.Config{Egress: cfg.Egress}), egress: egress.New(cfg.Egress)}, nil
}

// routes adds the /v1 routes to e, each with the scope it needs, and the
// published OpenAPI document.
func (a *API) routes(e *gin.Engine) {
	e.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", docs.OpenAPI) })
	v1 := e.Group("/v1", a.auth)
	cr, cw := need(ScopeConfigRead), need(ScopeConfigWrite)
	v1.POST("/event-types", cw, a.createEventType)
	v1.GET("/event-types", cr, a.listEventTypes)
	v1.GET("/event-types/:name", cr, a.getEventType)
	v1.PATCH("/event-types/:name", cw, a.patchEventType)
	v1.DELETE("/event-types/:name", cw, a.archiveEventType)
	v1.POST("/subscriptions", cw, a.createSubscription)
	v1.GET("/subscriptions", cr, a.listSubscriptions)
	v1.GET("/subscriptions/:id", cr, a.getSubscription)
	v1.PATCH("/subscriptions/:id", cw, a.patchSubscription)
	v1.DELETE("/subscriptions/:id", cw, a.deleteSubscription)
	v1.POST(`/subscriptions/:id/secret\:rotate`, cw, a.rotateSecret)
	v1.POST("/subscriptions/:id/test", cw, a.testSubscription)
	v1.GET("/subscriptions/:id/public-key", cr, a.publicKey)
	v1.POST("/subscriptions/:id", a.subscriptionAction) // :replay, :enable; each checks its scope
	ew, er := need(ScopeEventsWrite), need(ScopeEventsRead)
	v1.POST("/events", ew, a.publishEvent)
	v1.POST(`/events\:batch`, ew, a.publishBatch) // gin: "\:" is a literal colon
	v1.GET("/events", er, a.listEvents)
	v1.GET("/events/:id", er, a.getEvent)
	dr, dw := need(ScopeDeliveriesRead), need(ScopeDeliveriesWrite)
	v1.GET("/deliveries", dr, a.listDeliveries)
	v1.GET("/deliveries/:id", dr, a.getDelivery)
	v1.POST("/deliveries/:id", dw, a.deliveryAction)
	v1.POST(`/deliveries\:redrive`, dw, a.redrive)
	v1.GET("/dead-letters", dr, a.listDeadLetters)
	admin := need(ScopeAdmin)
	v1.POST("/api-keys", admin, a.createAPIKey)
	v1.GET("/api-keys", admin, a.listAPIKeys)
	v1.DELETE("/api-keys/:id", admin, a.revokeAPIKey)
	v1.GET("/audit", admin, a.listAudit)
}

// decode reads one JSON object into dst: bounded in size, unknown fields
// rejected, nothing after it.
func (a *API) decode(c *gin.Context, dst any) bool {
	return a.decodeLimit(c, dst, a.cfg.MaxBodyBytes)
}

// decodeLimit is decode with another size limit.
func (a *API) decodeLimit(c *gin.Context, dst any, limit int64) bool {
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send Content-Type: application/json"))
		return false
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		if _, rerr := dec.Token(); rerr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusRequestEntityTooLarge, "body-too-large",
			fmt.Sprintf("the request body exceeds %d bytes", limit)))
	case errors.As(err, &typeErr):
		ecshttp.WriteProblem(c, ecshttp.Validation("a field has the wrong type",
			ecshttp.FieldError{Field: typeErr.Field, Message: "must be " + jsonKind(typeErr.Type.String())}))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		ecshttp.WriteProblem(c, ecshttp.Validation("unknown field", ecshttp.FieldError{Field: field, Message: "is not a known field"}))
	case errors.Is(err, io.EOF):
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusBadRequest, "malformed-json", "the request body is empty"))
	default:
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusBadRequest, "malformed-json", "the request body is not valid JSON: "+err.Error()))
	}
	return false
}

func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "a boolean"
	default:
		return "an object"
	}
}

// fail answers a store error: not found as 404 naming what, anything else 500.
func (a *API) fail(c *gin.Context, err error, what string) {
	if errors.Is(err, delivery.ErrNotFound) || errors.Is(err, outbox.ErrNotFound) {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusNotFound, "", "no "+what))
		return
	}
	a.internal(c, err)
}

// internal logs err and answers 500 without leaking it.
func (a *API) internal(c *gin.Context, err error) {
	a.log.Error("request failed", "request_id", ecshttp.RequestID(c), "route", c.FullPath(), "error", err)
	ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusInternalServerError, "", "internal error; see the server log for request "+ecshttp.RequestID(c)))
}

// LoadConfig reads ECS_API_* variables.
func LoadConfig(e *config.Env) Config {
	return Config{
		Tokens:         e.List("ECS_API_TOKENS", nil),
		MaxBodyBytes:   int64(e.Int("ECS_API_MAX_BODY_BYTES", 1<<20)),
		MaxBatchBytes:  int64(e.Int("ECS_API_MAX_BATCH_BYTES", 16<<20)),
		JWTHS256Secret: e.String("ECS_API_JWT_HS256_SECRET", ""),
		JWTJWKSURL:     e.String("ECS_API_JWT_JWKS_URL", ""),
		JWTIssuer:      e.String("ECS_API_JWT_ISSUER", ""),
		JWTAudience:    e.String("ECS_API_JWT_AUDIENCE", ""),
		AllowHTTPURLs:  e.String("ECS_API_ALLOW_HTTP_URLS", "false") == "true",
		KafkaBrokers:   e.List("ECS_KAFKA_BROKERS", nil),
		DLQTopic:       e.String("ECS_KAFKA_DLQ_TOPIC", "ecs.dlq"),
		SecretOverlap:  e.Duration("ECS_API_SECRET_ROTATION_OVERLAP", 24*time.Hour),
		Egress:         egress.LoadConfig(e),
	}
}
