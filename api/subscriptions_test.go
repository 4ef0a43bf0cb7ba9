package api_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/logging"
)

func TestSubscriptionSettingsAndValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"order.created", "order.paid"} {
		require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"`+n+`"}`).code)
	}
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.*"],
		"metadata":{"team":"billing"},"headers":{"Authorization":"Bearer abc","X-Tenant":"t1"},"timeout_ms":5000,"state":"paused"}`)
	require.Equal(t, 201, r.code, r.raw)
	id := r.body["id"].(string)
	require.Equal(t, `"1"`, r.header.Get("ETag"))
	got := b.do(t, "GET", "/v1/subscriptions/"+id, "")
	require.Equal(t, "paused", got.body["state"])
	require.Equal(t, map[string]any{"team": "billing"}, got.body["metadata"])
	require.Equal(t, "t1", got.body["headers"].(map[string]any)["X-Tenant"])
	require.Equal(t, float64(5000), got.body["timeout_ms"])
	require.Nil(t, got.body["secret"])

	for name, tc := range map[string]struct{ body, field string }{
		"plain http":        {`{"url":"http://hooks.example","event_types":["order.paid"]}`, "url"},
		"bad wildcard":      {`{"url":"https://hooks.example","event_types":["order*"]}`, "event_types[0]"},
		"unknown type":      {`{"url":"https://hooks.example","event_types":["order.refunded"]}`, "event_types[0]"},
		"signature header":  {`{"url":"https://hooks.example","event_types":["*"],"headers":{"Webhook-Signature":"x"}}`, "headers.Webhook-Signature"},
		"content type":      {`{"url":"https://hooks.example","event_types":["*"],"headers":{"Content-Type":"text/plain"}}`, "headers.Content-Type"},
		"bad header name":   {`{"url":"https://hooks.example","event_types":["*"],"headers":{"X Bad":"x"}}`, "headers.X Bad"},
		"timeout too short": {`{"url":"https://hooks.example","event_types":["*"],"timeout_ms":10}`, "timeout_ms"},
		"bad state":         {`{"url":"https://hooks.example","event_types":["*"],"state":"sleeping"}`, "state"},
	} {
		r := b.do(t, "POST", "/v1/subscriptions", tc.body)
		require.Equal(t, 422, r.code, name)
		require.Equal(t, tc.field, fieldOf(r), name)
	}

	stale := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"state":"active"}`, "If-Match", `"9"`)
	require.Equal(t, 412, stale.code)
	p := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"state":"disabled","disabled_reason":"endpoint retired","timeout_ms":0}`, "If-Match", `"1"`)
	require.Equal(t, 200, p.code, p.raw)
	require.Equal(t, "disabled", p.body["state"])
	require.Equal(t, "endpoint retired", p.body["disabled_reason"])
	require.Nil(t, p.body["timeout_ms"])
	require.Equal(t, `"2"`, p.header.Get("ETag"))
	active := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"state":"active","event_types":["order.paid","*"]}`)
	require.Equal(t, 200, active.code)
	require.Nil(t, active.body["disabled_reason"])
	require.Equal(t, []any{"order.paid", "*"}, active.body["event_types"])
	require.Equal(t, 422, b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"url":"ftp://x"}`).code)
	require.Equal(t, 422, b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"secret":"whsec_x"}`).code, "the secret changes only by rotation")
	require.Equal(t, 412, b.do(t, "DELETE", "/v1/subscriptions/"+id, "", "If-Match", `"1"`).code)
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`)
	id, first := r.body["id"].(string), r.body["secret"].(string)

	rot := b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", `{"overlap_seconds":3600}`)
	require.Equal(t, 200, rot.code, rot.raw)
	second := rot.body["secret"].(string)
	require.NotEqual(t, first, second)
	until := mustTime(t, rot.body["previous_secret_until"])
	require.WithinDuration(t, time.Now().Add(time.Hour), until, time.Minute)
	got := b.do(t, "GET", "/v1/subscriptions/"+id, "")
	require.NotContains(t, got.raw, second)
	require.NotContains(t, got.raw, first)
	require.NotNil(t, got.body["previous_secret_until"])

	given := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	mine := b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", `{"secret":"`+given+`","overlap_seconds":0}`)
	require.Equal(t, 200, mine.code)
	require.Equal(t, given, mine.body["secret"])
	require.Nil(t, mine.body["previous_secret_until"], "no overlap")
	require.Equal(t, 200, b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", "").code, "a body is optional")
	require.Equal(t, 422, b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", `{"overlap_seconds":-1}`).code)
	require.Equal(t, 422, b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", `{"secret":"nope"}`).code)
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/01a21173-0000-7000-8000-00000000ffff/secret:rotate", "").code)
}

func TestSubscriptionFilterAndRetryPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"],
		"filter":"data.amount > 100","retry_policy":{"max_attempts":3,"max_age_seconds":3600}}`)
	require.Equal(t, 201, r.code, r.raw)
	require.Equal(t, "data.amount > 100", r.body["filter"])
	require.Equal(t, map[string]any{"max_attempts": float64(3), "max_age_seconds": float64(3600)}, r.body["retry_policy"])
	id := r.body["id"].(string)
	cleared := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"filter":null,"retry_policy":null}`)
	require.Equal(t, 200, cleared.code)
	require.Nil(t, cleared.body["filter"])
	require.Nil(t, cleared.body["retry_policy"])
	for name, tc := range map[string]struct{ body, field string }{
		"filter does not parse": {`{"filter":"data.amount >"}`, "filter"},
		"filter not a bool":     {`{"filter":"1 + 2"}`, "filter"},
		"filter not a string":   {`{"filter":5}`, "filter"},
		"too many attempts":     {`{"retry_policy":{"max_attempts":500}}`, "retry_policy.max_attempts"},
		"age too short":         {`{"retry_policy":{"max_age_seconds":5}}`, "retry_policy.max_age_seconds"},
		"unknown policy field":  {`{"retry_policy":{"backoff":"fast"}}`, "retry_policy"},
	} {
		r := b.do(t, "PATCH", "/v1/subscriptions/"+id, tc.body)
		require.Equal(t, 422, r.code, name)
		require.Equal(t, tc.field, fieldOf(r), name)
	}
}

// TestSubscriptionURLMustBePublic: without an allow-list a subscription URL
// that is, or resolves to, a private, loopback, link-local or reserved address
// is refused on create and on PATCH, naming the address; with loopback allowed
// it is accepted. A subscription saved where loopback was allowed still cannot
// be reached from an API that does not allow it: the test send is checked at
// dial time.
func TestSubscriptionURLMustBePublic(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewDB(t)
	strict := serve(t, pool, api.Config{Tokens: []string{token}, AllowHTTPURLs: true}, logging.Discard())
	open := serve(t, pool, api.Config{Tokens: []string{token}, AllowHTTPURLs: true, Egress: loopbackOK}, logging.Discard())
	require.Equal(t, 201, strict.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)

	refused := func(t *testing.T, r response, named string) {
		t.Helper()
		require.Equal(t, 422, r.code, r.raw)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		require.Equal(t, "url", fieldOf(r), r.raw)
		require.Contains(t, r.raw, "must not point to a private, loopback, link-local or reserved address ("+named+")")
	}
	for _, tc := range []struct{ url, named string }{
		{"http://127.0.0.1:9/x", "127.0.0.1"},
		{"http://localhost:9/x", "localhost resolves to 127.0.0.1"},
		{"http://169.254.169.254/latest/meta-data", "169.254.169.254"},
		{"http://[::ffff:127.0.0.1]/x", "127.0.0.1"},
		{"http://10.1.2.3/x", "10.1.2.3"},
		{"http://[fe80::1]/x", "fe80::1"},
		{"https://[fc00::1]:8443/x", "fc00::1"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			refused(t, strict.do(t, "POST", "/v1/subscriptions", `{"url":"`+tc.url+`","event_types":["order.created"]}`), tc.named)
		})
	}

	var hits atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost:9/x", receiver.URL} {
		r := open.do(t, "POST", "/v1/subscriptions", `{"url":"`+u+`","event_types":["order.created"]}`)
		require.Equal(t, 201, r.code, r.raw)
	}
	pub := strict.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`)
	require.Equal(t, 201, pub.code, pub.raw)
	refused(t, strict.do(t, "PATCH", "/v1/subscriptions/"+pub.body["id"].(string), `{"url":"http://127.0.0.1:9/x"}`), "127.0.0.1")

	sub := open.do(t, "POST", "/v1/subscriptions", `{"url":"`+receiver.URL+`","event_types":["order.created"]}`)
	require.Equal(t, 201, sub.code, sub.raw)
	test := "/v1/subscriptions/" + sub.body["id"].(string) + "/test"
	r := strict.do(t, "POST", test, "")
	require.Equal(t, 200, r.code, r.raw)
	require.Equal(t, false, r.body["succeeded"], r.raw)
	require.Contains(t, r.body["error"], "is not a permitted destination")
	require.Zero(t, hits.Load(), "nothing reached the receiver")
	r = open.do(t, "POST", test, "")
	require.Equal(t, true, r.body["succeeded"], r.raw)
	require.EqualValues(t, 1, hits.Load())
}
