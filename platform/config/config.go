package config

import (
	"errors"
	"fmt"
	"strings"
)

// Common holds the settings every role reads.
type Common struct {
	// HTTPAddr is where the role serves /healthz, /readyz, /metrics (and, for the
	// API, the REST API). ECS_HTTP_ADDR; the default differs per role.
	HTTPAddr string
	// LogLevel is debug, info, warn or error. ECS_LOG_LEVEL, default info.
	LogLevel string
	// LogFormat is auto (coloured text on a terminal, JSON otherwise), text or
	// json. ECS_LOG_FORMAT, default auto.
	LogFormat string
	// DatabaseURL locates PostgreSQL. ECS_DATABASE_URL; required by the
	// production roles, optional for the dev app (which then starts its own).
	DatabaseURL string
	// DatabaseMaxConns caps the pool. ECS_DATABASE_MAX_CONNS, default 20.
	DatabaseMaxConns int
	// KafkaBrokers are seed brokers. ECS_KAFKA_BROKERS, comma-separated;
	// required by the relay and worker, optional for the dev app (embedded kfake).
	KafkaBrokers []string
}

// LoadCommon reads the common settings with defaultAddr as the HTTP default.
func LoadCommon(e *Env, defaultAddr string) Common {
	return Common{
		HTTPAddr:         e.String("ECS_HTTP_ADDR", defaultAddr),
		LogLevel:         strings.ToLower(e.String("ECS_LOG_LEVEL", "info")),
		LogFormat:        strings.ToLower(e.String("ECS_LOG_FORMAT", "auto")),
		DatabaseURL:      e.String("ECS_DATABASE_URL", ""),
		DatabaseMaxConns: e.Int("ECS_DATABASE_MAX_CONNS", 20),
		KafkaBrokers:     e.List("ECS_KAFKA_BROKERS", nil),
	}
}

// Validate checks the common settings; needDB and needKafka say which
// dependencies the role cannot run without.
func (c Common) Validate(needDB, needKafka bool) error {
	var errs []error
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("ECS_HTTP_ADDR must not be empty"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("ECS_LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("ECS_LOG_FORMAT must be auto, text or json, not %q", c.LogFormat))
	}
	if needDB && c.DatabaseURL == "" {
		errs = append(errs, errors.New("ECS_DATABASE_URL is required"))
	}
	if c.DatabaseMaxConns < 2 {
		errs = append(errs, errors.New("ECS_DATABASE_MAX_CONNS must be at least 2"))
	}
	if needKafka && len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("ECS_KAFKA_BROKERS is required"))
	}
	return errors.Join(errs...)
}
