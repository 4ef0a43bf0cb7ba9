// Package webhooktest holds misbehaving subscriber endpoints for tests: one
// that never answers and one that answers slowly. Each reads the request body
// first, because only then does net/http notice a client that gave up and end
// the request's context, so the server can close when the test ends.
package webhooktest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Dead accepts every request and never answers: each attempt ends at the
// client's timeout. It closes when the test ends.
func Dead(t testing.TB) *httptest.Server {
	return serve(t, func(r *http.Request) { <-r.Context().Done() })
}

// Slow answers 200 after delay. It closes when the test ends.
func Slow(t testing.TB, delay time.Duration) *httptest.Server {
	return serve(t, func(r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	})
}

func serve(t testing.TB, wait func(*http.Request)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		wait(r)
	}))
	t.Cleanup(srv.Close)
	return srv
}
