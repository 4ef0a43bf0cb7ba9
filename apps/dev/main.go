// Command dev runs the whole platform in one process on embedded defaults: a
// local PostgreSQL started from the installed server binaries (data under .data/,
// so a restart keeps it), the in-process Kafka (kfake), and the API, relay and
// worker. ECS_DATABASE_URL and ECS_KAFKA_BROKERS point it at external ones.
//
//	go run ./apps/dev
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/config"
	"github.com/eventconfigservice/ecs/platform/db"
	"github.com/eventconfigservice/ecs/platform/db/localpg"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
	"github.com/eventconfigservice/ecs/platform/service"
	"github.com/eventconfigservice/ecs/schema"
)

const name = "ecs-dev"

func main() {
	if len(os.Args) > 1 {
		service.Fatal(name, fmt.Errorf("takes no arguments; configure it with ECS_* environment variables (see the README)"))
	}
	if err := run(); err != nil {
		service.Fatal(name, err)
	}
}

func run() error {
	env := config.FromOS()
	common := config.LoadCommon(env, "127.0.0.1:8080")
	dataDir := env.String("ECS_DEV_DATA_DIR", ".data")
	token := env.String("ECS_DEV_TOKEN", "")
	cfg := stackConfig{
		HTTPAddr: common.HTTPAddr,
		Relay:    relay.LoadConfig(env),
		Worker:   worker.LoadConfig(env),
		Kafka:    kafka.LoadConfig(env).WithDefaults(),
	}
	// Local receivers (the built-in /dev/inbox, a server on localhost) are on
	// loopback, which webhooks may not reach elsewhere.
	cfg.Worker.HTTP.Egress = cfg.Worker.HTTP.Egress.AllowLoopback()
	if err := errors.Join(env.Err(), common.Validate(false, false), cfg.Relay.WithDefaults().Validate(), cfg.Worker.WithDefaults().Validate()); err != nil {
		return err
	}
	log := logging.New(os.Stderr, common.LogLevel, common.LogFormat)
	ctx := context.Background()
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if token == "" {
		if token, err = devToken(filepath.Join(dataDir, "dev-token")); err != nil {
			return err
		}
	}
	cfg.API = api.LoadConfig(env)
	cfg.API.Tokens = []string{token}
	cfg.API.AllowHTTPURLs = true // local receivers, like the built-in /dev/inbox
	cfg.API.Egress = cfg.API.Egress.AllowLoopback()

	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dbURL, dbNote := common.DatabaseURL, "external"
	if dbURL == "" {
		log.Info("starting local PostgreSQL", "data_dir", filepath.Join(dataDir, "postgres"))
		pg, err := localpg.Start(ctx, localpg.Config{DataDir: filepath.Join(dataDir, "postgres"), Database: "ecs", Logger: log})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { _ = pg.Stop(context.Background()) })
		dbURL, dbNote = pg.URL(), "local, data in "+filepath.Join(dataDir, "postgres")
	}
	if err := schema.MigrateURL(ctx, dbURL); err != nil {
		cleanup()
		return err
	}
	kafkaNote := "external"
	if len(common.KafkaBrokers) == 0 {
		emb, err := kafka.StartEmbedded(filepath.Join(dataDir, "kfake"), log)
		if err != nil {
			cleanup()
			return err
		}
		cleanups = append(cleanups, emb.Close)
		common.KafkaBrokers, kafkaNote = emb.Brokers(), "embedded kfake, data in "+filepath.Join(dataDir, "kfake")
	}
	cfg.Kafka.Brokers = common.KafkaBrokers
	cfg.API.KafkaBrokers, cfg.API.DLQTopic = common.KafkaBrokers, cfg.Kafka.DLQTopic
	pool, err := db.Open(ctx, db.PoolConfig{URL: dbURL, MaxConns: int32(common.DatabaseMaxConns), ApplicationName: name})
	if err != nil {
		cleanup()
		return err
	}
	cleanups = append(cleanups, pool.Close)
	st, err := newStack(ctx, cfg, pool, log)
	if err != nil {
		cleanup()
		return err
	}
	st.Engine.POST("/dev/inbox", inbox(log))
	printBanner(os.Stdout, st.HTTP.Addr(), token, redact(dbURL)+" ("+dbNote+")", strings.Join(common.KafkaBrokers, ",")+" ("+kafkaNote+")")
	return service.Run(log, st.services(), cleanup)
}

// devToken returns the token saved in path, or makes and saves one, so the
// token printed last time still works after a restart.
func devToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := "ecs_dev_" + base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save dev token: %w", err)
	}
	return tok, nil
}

func redact(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.Index(u[i+3:], "@"); j >= 0 {
			if k := strings.Index(u[i+3:i+3+j], ":"); k >= 0 {
				return u[:i+3+k] + ":***" + u[i+3+j:]
			}
		}
	}
	return u
}

// inbox is a webhook receiver built into the dev app, so the walk-through works
// without another server: it logs the webhook id and answers 204.
func inbox(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		n, _ := io.Copy(io.Discard, io.LimitReader(c.Request.Body, 1<<20))
		log.Info("dev inbox received a webhook",
			"webhook_id", c.GetHeader(signature.HeaderID), "bytes", n,
			"signed", strings.HasPrefix(c.GetHeader(signature.HeaderSignature), "v1,"))
		c.Status(http.StatusNoContent)
	}
}

func printBanner(w io.Writer, addr, token, dbURL, brokers string) {
	base := "http://" + addr
	auth := "-H 'Authorization: Bearer " + token + "' -H 'Content-Type: application/json'"
	fmt.Fprintf(w, `
EventConfigService dev platform is up (Ctrl-C stops it)
  API          %[1]s
  Admin token  %[2]s
  PostgreSQL   %[3]s
  Kafka        %[4]s

Try it:
  curl -sS %[5]s %[1]s/v1/event-types -d '{"name":"order.created"}'
  curl -sS %[5]s %[1]s/v1/subscriptions -d '{"url":"%[1]s/dev/inbox","event_types":["order.created"]}'
  curl -sS %[5]s %[1]s/v1/events -H 'Idempotency-Key: order-1-created' -d '{"type":"order.created","key":"order-1","data":{"id":1}}'
  curl -sS %[5]s '%[1]s/v1/deliveries?status=succeeded'

`, base, token, dbURL, brokers, auth)
}
