package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/worker"
	"github.com/eventconfigservice/ecs/outbox/relay"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/metrics"
	"github.com/eventconfigservice/ecs/platform/service"
)

// stackConfig is everything the three roles need once PostgreSQL and Kafka exist.
type stackConfig struct {
	HTTPAddr string
	API      api.Config
	Relay    relay.Config
	Worker   worker.Config
	Kafka    kafka.Config
	// KafkaOpts are extra franz-go options for the relay and worker (tests).
	KafkaOpts []kgo.Opt
}

// stack is the whole platform in one process: the API server, the relay and the
// worker, sharing one pool and one metrics registry.
type stack struct {
	Reg    *prometheus.Registry
	Engine *gin.Engine
	HTTP   *ecshttp.Server
	Relay  *relay.Relay
	Worker *worker.Worker
}

// newStack builds the roles; ctx bounds the API's background work.
func newStack(ctx context.Context, cfg stackConfig, pool *pgxpool.Pool, log *slog.Logger) (*stack, error) {
	reg := metrics.NewRegistry()
	kcfg := cfg.Kafka.WithDefaults()
	e := ecshttp.NewEngine(log, reg)
	ecshttp.MountOps(e, reg, map[string]ecshttp.Check{"postgres": pool.Ping})
	if err := api.Mount(ctx, e, cfg.API, pool, kcfg.Topic, log); err != nil {
		return nil, err
	}
	r, err := relay.New(cfg.Relay, kcfg, pool, log, reg, cfg.KafkaOpts...)
	if err != nil {
		return nil, err
	}
	w, err := worker.New(cfg.Worker, kcfg, pool, log, reg, cfg.KafkaOpts...)
	if err != nil {
		return nil, err
	}
	srv, err := ecshttp.Listen(cfg.HTTPAddr, e, log)
	if err != nil {
		return nil, err
	}
	return &stack{Reg: reg, Engine: e, HTTP: srv, Relay: r, Worker: w}, nil
}

// services lists what to start, in order: consumers of the outbox first, so the
// API never accepts events nothing will move.
func (s *stack) services() []service.Service {
	return []service.Service{s.Worker, s.Relay, s.HTTP}
}

// start starts every service, stopping the started ones if one fails.
func (s *stack) start(ctx context.Context) error {
	var started []service.Service
	for _, svc := range s.services() {
		if err := svc.Start(ctx); err != nil {
			for i := len(started) - 1; i >= 0; i-- {
				started[i].Stop(ctx)
			}
			return fmt.Errorf("start: %w", err)
		}
		started = append(started, svc)
	}
	return nil
}

// stop stops every service in reverse order.
func (s *stack) stop(ctx context.Context) {
	svcs := s.services()
	for i := len(svcs) - 1; i >= 0; i-- {
		svcs[i].Stop(ctx)
	}
}
