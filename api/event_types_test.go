package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/logging"
)

const amountSchema = `{"type":"object","required":["amount"],"properties":{"amount":{"type":"number","minimum":0}}}`

func fieldOf(r response) string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	return errs[0].(map[string]any)["field"].(string)
}

func TestEventTypeSchemaIsEnforced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "POST", "/v1/event-types", `{"name":"order.paid","schema":`+amountSchema+`,"examples":[{"amount":3}]}`)
	require.Equal(t, 201, r.code, r.raw)
	require.Equal(t, `"1"`, r.header.Get("ETag"))
	require.Equal(t, true, r.body["enabled"])

	bad := b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":-5}}`)
	require.Equal(t, 422, bad.code, bad.raw)
	require.Equal(t, "/data/amount", fieldOf(bad))
	missing := b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{}}`)
	require.Equal(t, 422, missing.code)
	require.Equal(t, "/data", fieldOf(missing))
	require.Equal(t, 202, b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":5}}`).code)

	for name, body := range map[string]string{
		"invalid schema":      `{"name":"a.b","schema":{"type":7}}`,
		"schema reading file": `{"name":"a.b","schema":{"$ref":"file:///etc/passwd"}}`,
		"example off schema":  `{"name":"a.b","schema":` + amountSchema + `,"examples":[{"amount":1},{"amount":"x"}]}`,
	} {
		r := b.do(t, "POST", "/v1/event-types", body)
		require.Equal(t, 422, r.code, name)
		require.Contains(t, []string{"/schema", "/examples/1/amount"}, fieldOf(r), name)
	}
}

// Two API replicas share a database; one caches a type, the other changes it.
func TestEventTypeChangesReachOtherReplicasAtOnce(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewDB(t)
	replica := func() *testBundle { return serve(t, pool, api.Config{Tokens: []string{token}}, logging.Discard()) }
	a, b := replica(), replica()
	require.Equal(t, 201, a.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	require.Equal(t, 202, a.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":-1}}`).code, "a caches the type")

	require.Equal(t, 200, b.do(t, "PATCH", "/v1/event-types/order.paid", `{"schema":`+amountSchema+`}`).code)
	r := a.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":-1}}`)
	require.Equal(t, 422, r.code, "a enforces the new schema on its next event: %s", r.raw)

	require.Equal(t, 200, b.do(t, "PATCH", "/v1/event-types/order.paid", `{"enabled":false}`).code)
	r = a.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":1}}`)
	require.Equal(t, 422, r.code)
	require.Contains(t, r.body["type"], "event-type-disabled")

	require.Equal(t, 200, b.do(t, "PATCH", "/v1/event-types/order.paid", `{"enabled":true,"schema":null}`).code)
	require.Equal(t, 202, a.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{"amount":-1}}`).code, "a's cached refusal is not trusted")
}

func TestEventTypeConcurrencyAndArchive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid","description":"one"}`).code)
	got := b.do(t, "GET", "/v1/event-types/order.paid", "")
	require.Equal(t, 200, got.code)
	tag := got.header.Get("ETag")

	stale := b.do(t, "PATCH", "/v1/event-types/order.paid", `{"description":"two"}`, "If-Match", `"7"`)
	require.Equal(t, 412, stale.code)
	require.Equal(t, tag, stale.header.Get("ETag"))
	ok := b.do(t, "PATCH", "/v1/event-types/order.paid", `{"description":"two"}`, "If-Match", tag)
	require.Equal(t, 200, ok.code, ok.raw)
	require.Equal(t, "two", ok.body["description"])
	require.Equal(t, `"2"`, ok.header.Get("ETag"))
	require.Equal(t, 412, b.do(t, "DELETE", "/v1/event-types/order.paid", "", "If-Match", tag).code, "the old ETag is spent")
	require.Equal(t, 422, b.do(t, "PATCH", "/v1/event-types/order.paid", `{"name":"x"}`).code, "the name cannot change")

	require.Equal(t, 204, b.do(t, "DELETE", "/v1/event-types/order.paid", "").code)
	arch := b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{}}`)
	require.Equal(t, 422, arch.code)
	require.Contains(t, arch.body["type"], "event-type-archived")
	require.Equal(t, 422, b.do(t, "POST", "/v1/subscriptions", `{"url":"https://x.example","event_types":["order.paid"]}`).code)
	require.Len(t, b.do(t, "GET", "/v1/event-types", "").body["data"], 1, "archived types are hidden; ecs.subscription.disabled remains")
	require.Len(t, b.do(t, "GET", "/v1/event-types?include_archived=true", "").body["data"], 2)
	require.Equal(t, true, b.do(t, "GET", "/v1/event-types/order.paid", "").body["archived"])

	require.Equal(t, 200, b.do(t, "PATCH", "/v1/event-types/order.paid", `{"archived":false}`).code)
	require.Equal(t, 202, b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{}}`).code)
	require.Equal(t, 404, b.do(t, "GET", "/v1/event-types/nope", "").code)
	require.Equal(t, 404, b.do(t, "PATCH", "/v1/event-types/nope", `{}`).code)
}

func TestEventTypePagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"e.c", "e.a", "e.e", "e.b", "e.d"} {
		require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"`+n+`"}`).code)
	}
	var names []any
	path := "/v1/event-types?limit=2"
	for pages := 0; path != ""; pages++ {
		require.Less(t, pages, 4)
		r := b.do(t, "GET", path, "")
		require.Equal(t, 200, r.code)
		for _, et := range r.body["data"].([]any) {
			names = append(names, et.(map[string]any)["name"])
		}
		path = ""
		if c, ok := r.body["next_cursor"].(string); ok {
			path = "/v1/event-types?limit=2&cursor=" + c
		}
	}
	// The platform's own type is listed too: subscribers pick it like any other.
	require.Equal(t, []any{"e.a", "e.b", "e.c", "e.d", "e.e", "ecs.subscription.disabled"}, names)
	require.Equal(t, 422, b.do(t, "GET", "/v1/event-types?cursor=!!", "").code)
	require.Equal(t, 422, b.do(t, "GET", "/v1/event-types?limit=5000", "").code)
}
