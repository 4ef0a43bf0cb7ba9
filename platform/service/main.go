package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Service is what Run starts and stops.
type Service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context)
}

// StopTimeout bounds a soft stop on SIGINT/SIGTERM before work is cancelled;
// Kubernetes' default grace period is 30s, so stay under it.
const StopTimeout = 25 * time.Second

// Run starts services in order, waits for SIGINT or SIGTERM, then stops them in
// reverse order (soft, then hard after StopTimeout) and runs cleanup. A start
// failure stops what already started and is returned.
func Run(log *slog.Logger, services []Service, cleanup func()) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var started []Service
	shutdown := func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			started[i].Stop(stopCtx)
		}
		if cleanup != nil {
			cleanup()
		}
	}
	for _, s := range services {
		if err := s.Start(ctx); err != nil {
			shutdown()
			return err
		}
		started = append(started, s)
	}
	<-ctx.Done()
	stop() // a second Ctrl-C kills the process the default way
	log.Info("shutting down")
	shutdown()
	return nil
}

// Fatal prints err as one line ("name: ...") on stderr and exits 1: what a CLI
// owes its user when it cannot start.
func Fatal(name string, err error) {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	fmt.Fprintf(os.Stderr, "%s: %s\n", name, msg)
	os.Exit(1)
}
