package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/eventconfigservice/ecs/platform/service"
)

// Server serves a handler with Start/Stop. Stop drains in-flight requests (soft),
// then closes connections when its context ends (hard).
type Server struct {
	service.Base
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Listen binds addr now, so a port clash fails at start-up and ":0" gets a port.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	return &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		ln:  ln,
		log: log,
	}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Start serves in the background.
func (s *Server) Start(ctx context.Context) error {
	s.StartRun(ctx, func(ctx context.Context, stopping <-chan struct{}) {
		errc := make(chan error, 1)
		go func() { errc <- s.srv.Serve(s.ln) }()
		select {
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server failed", "addr", s.Addr(), "error", err)
			}
			return
		case <-stopping:
		case <-ctx.Done():
		}
		shutdownCtx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-ctx.Done():
			case <-shutdownCtx.Done():
			}
			cancel()
		}()
		if err := s.srv.Shutdown(shutdownCtx); err != nil {
			_ = s.srv.Close()
		}
		cancel()
		<-errc
	})
	return nil
}
