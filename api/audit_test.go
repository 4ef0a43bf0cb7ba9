package api_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditRecordsChangesAndNoSecretLeaks(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewDB(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := serve(t, pool, api.Config{Tokens: []string{token}}, log)

	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	require.Equal(t, 200, b.do(t, "PATCH", "/v1/event-types/order.created", `{"description":"orders"}`).code)
	sub := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`)
	secret, subID := sub.body["secret"].(string), sub.body["id"].(string)
	key := b.do(t, "POST", "/v1/api-keys", `{"name":"ops","scopes":["admin"]}`)
	apiKey, keyID := key.body["key"].(string), key.body["id"].(string)
	require.Equal(t, 204, b.do(t, "DELETE", "/v1/subscriptions/"+subID, "").code)
	require.Equal(t, 204, b.do(t, "DELETE", "/v1/api-keys/"+keyID, "").code)
	require.Equal(t, 204, b.do(t, "DELETE", "/v1/event-types/order.created", "").code)
	// Failures do not echo secrets either.
	require.Equal(t, 422, b.do(t, "POST", "/v1/subscriptions", `{"url":"https://x.example","event_types":["order.created"],"secret":"whsec_tooshort"}`).code)
	require.Equal(t, 401, b.do(t, "GET", "/v1/subscriptions", "", "Authorization", "Bearer "+apiKey).code)

	var seen []string
	for _, path := range []string{"/v1/audit", "/v1/subscriptions", "/v1/api-keys", "/v1/event-types?include_archived=true", "/v1/audit?resource_type=subscription"} {
		r := b.do(t, "GET", path, "")
		require.Equal(t, 200, r.code)
		seen = append(seen, r.raw)
	}
	seen = append(seen, logs.String())
	for _, text := range seen {
		require.NotContains(t, text, secret)
		require.NotContains(t, text, apiKey)
		require.NotContains(t, text, token)
		require.NotContains(t, text, "whsec_tooshort")
	}

	audit := b.do(t, "GET", "/v1/audit", "")
	var actions []any
	for _, e := range audit.body["data"].([]any) {
		entry := e.(map[string]any)
		actions = append(actions, entry["action"])
		require.Equal(t, "token", entry["actor"])
		require.NotEmpty(t, entry["request_id"])
	}
	require.Equal(t, []any{"event_type.archive", "api_key.revoke", "subscription.delete", "api_key.create",
		"subscription.create", "event_type.update", "event_type.create"}, actions, "newest first")
	upd := b.do(t, "GET", "/v1/audit?action=event_type.update", "").body["data"].([]any)[0].(map[string]any)
	require.Equal(t, "", upd["before"].(map[string]any)["description"])
	require.Equal(t, "orders", upd["after"].(map[string]any)["description"])
	paged := b.do(t, "GET", "/v1/audit?limit=4", "")
	require.Len(t, paged.body["data"], 4)
	rest := b.do(t, "GET", "/v1/audit?limit=4&cursor="+paged.body["next_cursor"].(string), "")
	require.Len(t, rest.body["data"], 3)

	// A change whose audit entry cannot be written does not happen.
	_, err := pool.Exec(t.Context(), `ALTER TABLE audit_log ADD CONSTRAINT no_more CHECK (false) NOT VALID`)
	require.NoError(t, err)
	require.Equal(t, 500, b.do(t, "POST", "/v1/event-types", `{"name":"user.signup"}`).code)
	require.Equal(t, 404, b.do(t, "GET", "/v1/event-types/user.signup", "").code)
}
