package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/logging"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const token = "api-test-token-0123456789"

// loopbackOK lets subscriptions point at the tests' httptest receivers (and
// localhost), which the API refuses by default.
var loopbackOK = egress.Config{}.AllowLoopback()

type testBundle struct {
	srv  *httptest.Server
	pool *pgxpool.Pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	return serve(t, pool, api.Config{Tokens: []string{token}, MaxBodyBytes: 4096, Egress: loopbackOK}, logging.Discard())
}

// serve mounts the API with cfg over pool and serves it. Every request and
// response is checked against the published OpenAPI document (contract_test.go).
func serve(t *testing.T, pool *pgxpool.Pool, cfg api.Config, log *slog.Logger) *testBundle {
	t.Helper()
	e := ecshttp.NewEngine(log, nil)
	require.NoError(t, api.Mount(t.Context(), e, cfg, pool, func(n string) string { return "ecs.events." + n }, log))
	srv := httptest.NewServer(validating(t, e))
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, pool: pool}
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (b *testBundle) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && raw[0] == '{' {
		require.NoError(t, json.Unmarshal(raw, &r.body), string(raw))
	}
	return r
}

func TestErrorsAreProblemDocuments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	big := `{"type":"order.created","data":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		code                     int
		problem                  string
		field                    string
	}{
		{"no token", "GET", "/v1/event-types", "", []string{"Authorization", ""}, 401, "unauthorized", ""},
		{"wrong token", "GET", "/v1/event-types", "", []string{"Authorization", "Bearer nope"}, 401, "unauthorized", ""},
		{"basic auth", "GET", "/v1/event-types", "", []string{"Authorization", "Basic " + token}, 401, "unauthorized", ""},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "about:blank", ""},
		{"wrong method", "PUT", "/v1/events", "{}", nil, 405, "about:blank", ""},
		{"malformed json", "POST", "/v1/events", `{"type":`, nil, 400, "malformed-json", ""},
		{"empty body", "POST", "/v1/events", "", []string{"Content-Type", "application/json"}, 400, "malformed-json", ""},
		{"trailing data", "POST", "/v1/events", `{"type":"order.created","data":{}} {}`, nil, 400, "malformed-json", ""},
		{"unknown field", "POST", "/v1/events", `{"type":"order.created","data":{},"tpye":1}`, nil, 422, "validation", "tpye"},
		{"wrong type", "POST", "/v1/events", `{"type":5,"data":{}}`, nil, 422, "validation", "type"},
		{"missing data", "POST", "/v1/events", `{"type":"order.created"}`, nil, 422, "validation", "data"},
		{"null data", "POST", "/v1/events", `{"type":"order.created","data":null}`, nil, 422, "validation", "data"},
		{"unknown event type", "POST", "/v1/events", `{"type":"nope","data":{}}`, nil, 422, "validation", "type"},
		{"key too long", "POST", "/v1/events", `{"type":"order.created","data":{},"key":"` + strings.Repeat("k", 1025) + `"}`, nil, 422, "validation", "key"},
		{"idempotency key too long", "POST", "/v1/events", `{"type":"order.created","data":{}}`, []string{"Idempotency-Key", strings.Repeat("i", 256)}, 422, "validation", "Idempotency-Key"},
		{"body too large", "POST", "/v1/events", big, nil, 413, "body-too-large", ""},
		{"not json", "POST", "/v1/events", `{}`, []string{"Content-Type", "text/plain"}, 415, "unsupported-media-type", ""},
		{"bad event type name", "POST", "/v1/event-types", `{"name":"Order Created"}`, nil, 422, "validation", "name"},
		{"duplicate event type", "POST", "/v1/event-types", `{"name":"order.created"}`, nil, 409, "event-type-exists", ""},
		{"subscription without url", "POST", "/v1/subscriptions", `{"event_types":["order.created"]}`, nil, 422, "validation", "url"},
		{"subscription ftp url", "POST", "/v1/subscriptions", `{"url":"ftp://x","event_types":["order.created"]}`, nil, 422, "validation", "url"},
		{"subscription credentials in url", "POST", "/v1/subscriptions", `{"url":"https://u:p@x.example","event_types":["order.created"]}`, nil, 422, "validation", "url"},
		{"subscription no types", "POST", "/v1/subscriptions", `{"url":"https://x.example","event_types":[]}`, nil, 422, "validation", "event_types"},
		{"subscription unknown type", "POST", "/v1/subscriptions", `{"url":"https://x.example","event_types":["nope"]}`, nil, 422, "validation", "event_types[0]"},
		{"subscription bad secret", "POST", "/v1/subscriptions", `{"url":"https://x.example","event_types":["order.created"],"secret":"hunter2"}`, nil, 422, "validation", "secret"},
		{"bad id", "GET", "/v1/subscriptions/not-a-uuid", "", nil, 404, "about:blank", ""},
		{"missing subscription", "GET", "/v1/subscriptions/01a21173-3496-795c-821c-6725ded937b2", "", nil, 404, "about:blank", ""},
		{"missing event", "GET", "/v1/events/01a21173-3496-795c-821c-6725ded937b2", "", nil, 404, "about:blank", ""},
		{"delete missing subscription", "DELETE", "/v1/subscriptions/01a21173-3496-795c-821c-6725ded937b2", "", nil, 404, "about:blank", ""},
		{"bad delivery filter", "GET", "/v1/deliveries?event_id=x", "", nil, 422, "validation", "event_id"},
		{"bad status filter", "GET", "/v1/deliveries?status=done", "", nil, 422, "validation", "status"},
		{"bad limit", "GET", "/v1/deliveries?limit=0", "", nil, 422, "validation", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, tt.method, tt.path, tt.body, tt.headers...)
			require.Equal(t, tt.code, r.code, r.raw)
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			require.Equal(t, float64(tt.code), r.body["status"])
			require.Contains(t, r.body["type"], tt.problem)
			require.NotEmpty(t, r.body["request_id"])
			require.Equal(t, r.header.Get("X-Request-Id"), r.body["request_id"])
			if tt.field != "" {
				errs, _ := r.body["errors"].([]any)
				require.NotEmpty(t, errs, r.raw)
				require.Equal(t, tt.field, errs[0].(map[string]any)["field"])
			}
		})
	}
}

func TestSubscriptionLifecycleKeepsTheSecretPrivate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created","description":"d"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created","order.created"],"description":"mine"}`)
	require.Equal(t, 201, r.code, r.raw)
	secret := r.body["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	require.Equal(t, []any{"order.created"}, r.body["event_types"], "duplicates removed")
	id := r.body["id"].(string)
	require.Equal(t, "/v1/subscriptions/"+id, r.header.Get("Location"))

	for _, path := range []string{"/v1/subscriptions", "/v1/subscriptions/" + id} {
		got := b.do(t, "GET", path, "")
		require.Equal(t, 200, got.code)
		require.Contains(t, got.raw, id)
		require.NotContains(t, got.raw, secret, path)
		require.NotContains(t, got.raw, "whsec_", path)
	}
	given := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	r2 := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://localhost:9/b","event_types":["order.created"],"secret":"`+given+`"}`)
	require.Equal(t, 201, r2.code)
	require.Equal(t, given, r2.body["secret"])

	require.Equal(t, 204, b.do(t, "DELETE", "/v1/subscriptions/"+id, "").code)
	require.Equal(t, 404, b.do(t, "GET", "/v1/subscriptions/"+id, "").code)
	require.Equal(t, 404, b.do(t, "DELETE", "/v1/subscriptions/"+id, "").code)
	list := b.do(t, "GET", "/v1/subscriptions", "")
	require.Len(t, list.body["data"], 1)

	et := b.do(t, "GET", "/v1/event-types/order.created", "")
	require.Equal(t, "ecs.events.order.created", et.body["topic"])
}

func TestPublishAndReadBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	sub := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`)
	r := b.do(t, "POST", "/v1/events", `{"type":"order.created","key":"o-1","data":{"b":2,  "a":1}}`)
	require.Equal(t, 202, r.code, r.raw)
	id := r.body["id"].(string)
	require.Equal(t, float64(1), r.body["key_seq"])

	ev := b.do(t, "GET", "/v1/events/"+id, "")
	require.Equal(t, 200, ev.code)
	require.Contains(t, ev.raw, `"data":{"b":2,"a":1}`, "payload kept as sent, compacted")
	deliveries := ev.body["deliveries"].([]any)
	require.Len(t, deliveries, 1)
	state := deliveries[0].(map[string]any)
	require.Equal(t, sub.body["id"], state["subscription_id"])
	require.Equal(t, "not_started", state["status"], "no worker runs in this test")

	list := b.do(t, "GET", "/v1/deliveries?event_id="+id+"&status=pending&limit=10", "")
	require.Equal(t, 200, list.code)
	require.Equal(t, []any{}, list.body["data"])
}

func TestConcurrentIdempotentPublishCreatesOneEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	const n = 24
	var wg sync.WaitGroup
	ids := make(chan string, n)
	replays := make(chan bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"type":"order.created","key":"o-1","data":{"x":1}}`
			if i%3 == 0 {
				body = `{ "type" : "order.created", "key":"o-1", "data" : { "x" : 1 } }`
			}
			req, _ := http.NewRequest("POST", b.srv.URL+"/v1/events", bytes.NewBufferString(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Idempotency-Key", "order-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var out struct {
				ID string `json:"id"`
			}
			if resp.StatusCode != 202 || json.NewDecoder(resp.Body).Decode(&out) != nil {
				t.Errorf("status %d", resp.StatusCode)
				return
			}
			ids <- out.ID
			replays <- resp.Header.Get(api.ReplayedHeader) == "true"
		}()
	}
	wg.Wait()
	close(ids)
	close(replays)
	distinct := map[string]bool{}
	for id := range ids {
		distinct[id] = true
	}
	require.Len(t, distinct, 1, "one event for one idempotency key")
	fresh := 0
	for r := range replays {
		if !r {
			fresh++
		}
	}
	require.Equal(t, 1, fresh, "exactly one answer is not a replay")

	conflict := b.do(t, "POST", "/v1/events", `{"type":"order.created","key":"o-1","data":{"x":2}}`, "Idempotency-Key", "order-1")
	require.Equal(t, 422, conflict.code)
	require.Contains(t, conflict.body["type"], "idempotency-key-reused")
	next := b.do(t, "POST", "/v1/events", `{"type":"order.created","key":"o-1","data":{}}`)
	require.Equal(t, float64(2), next.body["key_seq"], "replays and conflicts took no key_seq")
}
