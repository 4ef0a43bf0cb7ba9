package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/signature"
)

// delivery inserts a delivery of a new event with the given status.
func (b *testBundle) delivery(t *testing.T, sub, status string) (event, id string) {
	t.Helper()
	event = b.do(t, "POST", "/v1/events", `{"type":"order.created","data":{}}`).body["id"].(string)
	require.NoError(t, b.pool.QueryRow(context.Background(), `INSERT INTO deliveries (subscription_id, event_id, status, attempts, next_attempt_at)
		VALUES ($1, $2, $3, 8, now() + interval '1 day') RETURNING id`, sub, event, status).Scan(&id))
	return event, id
}

func (b *testBundle) status(t *testing.T, id string) string {
	return b.do(t, "GET", "/v1/deliveries/"+id, "").body["status"].(string)
}

func TestReplayAndRedrive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	sub := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`).body["id"].(string)
	other := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/b","event_types":["order.created"]}`).body["id"].(string)
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	_, dead := b.delivery(t, sub, "dead")
	_, ok := b.delivery(t, sub, "succeeded")
	// An event the subscription never got a delivery for (say it was disabled).
	missing := b.do(t, "POST", "/v1/events", `{"type":"order.created","data":{}}`).body["id"].(string)

	failed := b.do(t, "POST", "/v1/subscriptions/"+sub+":replay", `{"since":"`+since+`","only_failed":true}`)
	require.Equal(t, 202, failed.code, failed.raw)
	require.Equal(t, float64(1), failed.body["deliveries"])
	require.Equal(t, "pending", b.status(t, dead))
	require.Equal(t, "succeeded", b.status(t, ok))

	all := b.do(t, "POST", "/v1/subscriptions/"+sub+":replay", `{"since":"`+since+`"}`)
	require.Equal(t, 202, all.code)
	require.Equal(t, "pending", b.status(t, ok), "re-sent")
	got := b.do(t, "GET", "/v1/deliveries?subscription_id="+sub+"&event_id="+missing, "")
	require.Len(t, got.body["data"], 1, "created for the event it never had")
	require.Equal(t, 422, b.do(t, "POST", "/v1/subscriptions/"+sub+":replay", `{}`).code)
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/"+sub+":explode", `{}`).code)
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/01a21173-0000-7000-8000-00000000ffff:replay", `{"since":"`+since+`"}`).code)

	_, d1 := b.delivery(t, sub, "dead")
	_, d2 := b.delivery(t, other, "dead")
	r := b.do(t, "POST", "/v1/deliveries:redrive", `{"subscription_id":"`+sub+`"}`)
	require.Equal(t, 202, r.code, r.raw)
	require.Equal(t, float64(1), r.body["deliveries"])
	require.Equal(t, "pending", b.status(t, d1))
	require.Equal(t, "dead", b.status(t, d2))
	require.Equal(t, float64(1), b.do(t, "POST", "/v1/deliveries:redrive", `{}`).body["deliveries"])
	require.Equal(t, "pending", b.status(t, d2), "same delivery, so the same webhook-id")
}

func TestSubscriptionTestEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	var secret string
	var fail bool // read by the handler after the test sets it; requests are sequential
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if fail {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("X-Tenant") != "t1" || signature.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			r.Header.Get("webhook-signature"), body, time.Now(), time.Minute) != nil {
			http.Error(w, "bad", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	// The test server's certificate is self-signed; the platform verifies TLS,
	// so the attempt is expected to fail on it. A plain http receiver needs dev
	// mode, which this test's API does not have: check the refusal first.
	sub := b.do(t, "POST", "/v1/subscriptions", `{"url":"`+srv.URL+`","event_types":["order.created"],"headers":{"X-Tenant":"t1"}}`)
	require.Equal(t, 201, sub.code, sub.raw)
	secret = sub.body["secret"].(string)
	r := b.do(t, "POST", "/v1/subscriptions/"+sub.body["id"].(string)+"/test", "")
	require.Equal(t, 200, r.code, r.raw)
	require.Equal(t, false, r.body["succeeded"])
	require.Contains(t, r.body["error"], "certificate", "TLS is verified")
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/01a21173-0000-7000-8000-00000000ffff/test", "").code)

	// In dev mode (http allowed) against a plain receiver: signed, with headers.
	dev := jwtBundle(t, api.Config{Tokens: []string{token}, AllowHTTPURLs: true, Egress: loopbackOK})
	plain := httptest.NewServer(srv.Config.Handler)
	t.Cleanup(plain.Close)
	require.Equal(t, 201, dev.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	ds := dev.do(t, "POST", "/v1/subscriptions", `{"url":"`+plain.URL+`","event_types":["order.created"],"headers":{"X-Tenant":"t1"}}`)
	secret = ds.body["secret"].(string)
	ok := dev.do(t, "POST", "/v1/subscriptions/"+ds.body["id"].(string)+"/test", `{"type":"order.created","data":{"id":1}}`)
	require.Equal(t, 200, ok.code, ok.raw)
	require.Equal(t, true, ok.body["succeeded"], ok.raw)
	require.Equal(t, float64(204), ok.body["status_code"])
	fail = true
	bad := dev.do(t, "POST", "/v1/subscriptions/"+ds.body["id"].(string)+"/test", "")
	require.Equal(t, false, bad.body["succeeded"])
	require.Equal(t, float64(503), bad.body["status_code"])
	require.Equal(t, "nope\n", bad.body["response_body"])
}
