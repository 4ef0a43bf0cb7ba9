package api_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestListEventsFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"order.created", "user.signup"} {
		require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"`+n+`"}`).code)
	}
	var ids []string
	for i := range 7 {
		typ := []string{"order.created", "user.signup"}[i%2]
		r := b.do(t, "POST", "/v1/events", fmt.Sprintf(`{"type":%q,"key":"k%d","data":{"i":%d}}`, typ, i%3, i))
		require.Equal(t, 202, r.code)
		ids = append(ids, r.body["id"].(string))
	}
	mid := time.Now().UTC()

	var got []any
	path := "/v1/events?limit=3"
	for path != "" {
		r := b.do(t, "GET", path, "")
		require.Equal(t, 200, r.code, r.raw)
		for _, e := range r.body["data"].([]any) {
			got = append(got, e.(map[string]any)["id"])
		}
		path = ""
		if c, ok := r.body["next_cursor"].(string); ok {
			path = "/v1/events?limit=3&cursor=" + c
		}
	}
	require.Equal(t, []any{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}, got, "newest first, every page")

	require.Len(t, b.do(t, "GET", "/v1/events?type=user.signup", "").body["data"], 3)
	require.Len(t, b.do(t, "GET", "/v1/events?key=k0", "").body["data"], 3)
	require.Len(t, b.do(t, "GET", "/v1/events?type=order.created&key=k0", "").body["data"], 2)
	require.Len(t, b.do(t, "GET", "/v1/events?until="+url.QueryEscape(mid.Add(-time.Hour).Format(time.RFC3339)), "").body["data"], 0)
	require.Len(t, b.do(t, "GET", "/v1/events?since="+url.QueryEscape(mid.Add(-time.Hour).Format(time.RFC3339)), "").body["data"], 7)
	bad := b.do(t, "GET", "/v1/events?since=yesterday&cursor=xyz&limit=0", "")
	require.Equal(t, 422, bad.code)
	require.Len(t, bad.body["errors"], 3)
}

func TestDeliveryGetAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.created"}`).code)
	sub := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.created"]}`).body["id"].(string)
	worker := "01a21173-0000-7000-8000-000000000001"
	deliveries := map[string]string{}
	for _, st := range []struct{ status, owner string }{{"dead", ""}, {"succeeded", ""}, {"pending", ""}, {"pending", worker}, {"cancelled", ""}} {
		ev := b.do(t, "POST", "/v1/events", `{"type":"order.created","data":{}}`).body["id"].(string)
		var owner any
		if st.owner != "" {
			owner = st.owner
		}
		var id string
		require.NoError(t, b.pool.QueryRow(ctx, `INSERT INTO deliveries (subscription_id, event_id, status, attempts, owner, next_attempt_at)
			VALUES ($1, $2, $3, 3, $4, now() + interval '1 hour') RETURNING id`, sub, ev, st.status, owner).Scan(&id))
		_, err := b.pool.Exec(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_us, status_code, error, succeeded)
			VALUES ($1, 1, now(), 1500, 503, 'status 503', false)`, id)
		require.NoError(t, err)
		deliveries[st.status+st.owner] = id
	}

	one := b.do(t, "GET", "/v1/deliveries/"+deliveries["dead"], "")
	require.Equal(t, 200, one.code)
	attempt := one.body["attempt_log"].([]any)[0].(map[string]any)
	require.Equal(t, float64(503), attempt["status_code"])
	require.Equal(t, 1.5, attempt["latency_ms"])
	require.Equal(t, 404, b.do(t, "GET", "/v1/deliveries/01a21173-0000-7000-8000-00000000ffff", "").code)

	for name, want := range map[string]int{"dead": 202, "succeeded": 202, "pending": 202, "pending" + worker: 409, "cancelled": 409} {
		r := b.do(t, "POST", "/v1/deliveries/"+deliveries[name]+":retry", "")
		require.Equal(t, want, r.code, "%s: %s", name, r.raw)
		if want == 202 {
			require.Equal(t, "pending", r.body["status"])
			require.WithinDuration(t, time.Now(), mustTime(t, r.body["next_attempt_at"]), time.Minute, "due now")
		}
	}
	require.Equal(t, 404, b.do(t, "POST", "/v1/deliveries/"+deliveries["dead"]+":explode", "").code)
	require.Equal(t, 404, b.do(t, "POST", "/v1/deliveries/01a21173-0000-7000-8000-00000000ffff:retry", "").code)

	page := b.do(t, "GET", "/v1/deliveries?subscription_id="+sub+"&status=pending&limit=2", "")
	require.Equal(t, 200, page.code)
	require.Len(t, page.body["data"], 2)
	require.NotEmpty(t, page.body["next_cursor"])
	rest := b.do(t, "GET", "/v1/deliveries?subscription_id="+sub+"&status=pending&limit=2&cursor="+page.body["next_cursor"].(string), "")
	require.Len(t, rest.body["data"], 2, "4 pending after the retries")
	require.Nil(t, rest.body["next_cursor"])
}

func mustTime(t *testing.T, v any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, v.(string))
	require.NoError(t, err)
	return ts
}
