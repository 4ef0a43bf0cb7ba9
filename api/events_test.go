package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPublishBatchAnswersEachItem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid","schema":`+amountSchema+`}`).code)
	r := b.do(t, "POST", "/v1/events:batch", `{"events":[
		{"type":"order.paid","key":"o1","data":{"amount":1},"idempotency_key":"a"},
		{"type":"order.paid","key":"o1","data":{"amount":-1}},
		{"type":"nope","data":{}},
		{"type":"order.paid","data":null},
		{"type":"order.paid","key":"o1","data":{"amount":2}},
		{"type":"order.paid","key":"o1","data":{"amount":1},"idempotency_key":"a"}
	]}`)
	require.Equal(t, 200, r.code, r.raw)
	items := r.body["data"].([]any)
	require.Len(t, items, 6)
	status := func(i int) float64 { return items[i].(map[string]any)["status"].(float64) }
	event := func(i int) map[string]any { return items[i].(map[string]any)["event"].(map[string]any) }
	problem := func(i int) map[string]any { return items[i].(map[string]any)["error"].(map[string]any) }

	require.Equal(t, float64(202), status(0))
	require.Equal(t, float64(1), event(0)["key_seq"])
	require.Equal(t, float64(422), status(1))
	require.Equal(t, "/data/amount", problem(1)["errors"].([]any)[0].(map[string]any)["field"])
	require.Equal(t, float64(422), status(2))
	require.Equal(t, float64(422), status(3))
	require.Equal(t, "events[3].data", problem(3)["errors"].([]any)[0].(map[string]any)["field"])
	require.Equal(t, float64(202), status(4))
	require.Equal(t, float64(2), event(4)["key_seq"])
	require.Equal(t, float64(202), status(5))
	require.Equal(t, true, items[5].(map[string]any)["replayed"])
	require.Equal(t, event(0)["id"], event(5)["id"])

	got := b.do(t, "GET", "/v1/events/"+event(4)["id"].(string), "")
	require.Equal(t, 200, got.code)
	require.Contains(t, got.raw, `"data":{"amount":2}`)
}

func TestPublishBatchLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"a.b"}`).code)
	require.Equal(t, 422, b.do(t, "POST", "/v1/events:batch", `{"events":[]}`).code)
	var many []string
	for i := range 1001 {
		many = append(many, fmt.Sprintf(`{"type":"a.b","data":{"i":%d}}`, i))
	}
	require.Equal(t, 422, b.do(t, "POST", "/v1/events:batch", `{"events":[`+strings.Join(many, ",")+`]}`).code)
	r := b.do(t, "POST", "/v1/events:batch", `{"events":[`+strings.Join(many[:1000], ",")+`]}`)
	require.Equal(t, 200, r.code)
	for _, it := range r.body["data"].([]any) {
		require.Equal(t, float64(202), it.(map[string]any)["status"])
	}
	require.Equal(t, 404, b.do(t, "POST", "/v1/events:nope", `{}`).code)
}
