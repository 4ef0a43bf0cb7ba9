package sender

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/signature"
)

// loopbackOK lets the tests reach their httptest receivers on loopback.
var loopbackOK = egress.Config{}.AllowLoopback()

func TestSend(t *testing.T) {
	t.Parallel()
	secret, err := signature.NewSecret()
	require.NoError(t, err)
	key, err := signature.Key(secret)
	require.NoError(t, err)

	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantCode int
		wantOK   bool
		wantBody string
		wantErr  string
	}{
		{"2xx succeeds", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if err := signature.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
				r.Header.Get("webhook-signature"), body, time.Now(), time.Minute); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			w.WriteHeader(204)
		}, 204, true, "", ""},
		{"5xx fails and keeps the first KiB", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			_, _ = w.Write([]byte(strings.Repeat("x", 5000)))
		}, 503, false, strings.Repeat("x", 1024), "status 503"},
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, 302, false, "", "status 302"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
		}, 0, false, "", "timeout"},
		{"binary body is stored cleanly", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			_, _ = w.Write([]byte{'a', 0, 0xff, 'b'})
		}, 500, false, "a\uFFFDb", "status 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			s := New(Config{Timeout: 300 * time.Millisecond, Egress: loopbackOK})
			defer s.CloseIdle()
			res := s.Send(context.Background(), Request{URL: srv.URL, ID: "evt_1", Body: []byte(`{"a":1}`), Keys: [][]byte{key}})
			require.Equal(t, tt.wantCode, res.StatusCode)
			require.Equal(t, tt.wantOK, res.Succeeded())
			if tt.wantBody != "" {
				require.Equal(t, tt.wantBody, res.ResponseBody)
			}
			if tt.wantErr != "" {
				require.ErrorContains(t, res.Err, tt.wantErr)
			}
		})
	}
}

func TestSendSignsWithEveryKeyAndAddsHeaders(t *testing.T) {
	t.Parallel()
	oldSecret, _ := signature.NewSecret()
	newSecret, _ := signature.NewSecret()
	oldKey, _ := signature.Key(oldSecret)
	newKey, _ := signature.Key(newSecret)
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for _, secret := range []string{oldSecret, newSecret} {
			if err := signature.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
				r.Header.Get("webhook-signature"), body, time.Now(), time.Minute); err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		got <- r
	}))
	defer srv.Close()
	s := New(Config{Egress: loopbackOK})
	defer s.CloseIdle()
	res := s.Send(context.Background(), Request{URL: srv.URL, ID: "evt_1", Body: []byte(`{}`), Keys: [][]byte{newKey, oldKey},
		Headers: map[string]string{"X-Tenant": "t1"}, Timeout: time.Second})
	require.True(t, res.Succeeded(), "both secrets verify: %v", res.Err)
	r := <-got
	require.Equal(t, "t1", r.Header.Get("X-Tenant"))
	require.Len(t, strings.Fields(r.Header.Get("webhook-signature")), 2)
}

// TestSendRefusesPrivateDestinations: by default a webhook cannot reach a
// loopback receiver, whether the URL names the address or a host name that
// resolves to it (the check is made at dial time on the resolved address, so
// DNS rebinding after the URL was saved does not help); the allow-list opens it.
func TestSendRefusesPrivateDestinations(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	byName := fmt.Sprintf("http://localhost:%d/hook", port)
	mapped := fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/hook", port)

	def := New(Config{Timeout: 2 * time.Second})
	defer def.CloseIdle()
	for _, u := range []string{srv.URL, byName, mapped} {
		res := def.Send(context.Background(), Request{URL: u, ID: "evt_1", Body: []byte(`{}`)})
		require.False(t, res.Succeeded(), u)
		require.Zero(t, res.StatusCode, u)
		require.ErrorIs(t, res.Err, egress.ErrBlocked, u)
		require.ErrorContains(t, res.Err, "127.0.0.1 is not a permitted destination", u)
	}
	require.Zero(t, hits.Load(), "no request reached the receiver")

	allowed := New(Config{Timeout: 2 * time.Second, Egress: egress.Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	defer allowed.CloseIdle()
	for _, u := range []string{srv.URL, byName, mapped} {
		res := allowed.Send(context.Background(), Request{URL: u, ID: "evt_1", Body: []byte(`{}`)})
		require.True(t, res.Succeeded(), "%s: %v", u, res.Err)
	}
	require.EqualValues(t, 3, hits.Load())
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Wed, 25 Nov 2026 08:00:30 GMT": 30 * time.Second,
		"Wed, 25 Nov 2026 07:00:00 GMT": 0,
	} {
		require.Equal(t, want, retryAfter(v, now), v)
	}
}
