package api_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/logging"
)

// TestDeliverySettings: the delivery engine's per-subscription settings are
// stored, returned, cleared with null, and validated field by field.
func TestDeliverySettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"],
		"max_concurrency":2,"rate_limit":10,"ordering":"ordered","signature_schemes":["v1a","v1"],
		"retry_policy":{"schedule_seconds":[1,60,3600]}}`)
	require.Equal(t, 201, r.code, r.raw)
	require.Equal(t, float64(2), r.body["max_concurrency"])
	require.Equal(t, float64(10), r.body["rate_limit"])
	require.Equal(t, "ordered", r.body["ordering"])
	require.Equal(t, []any{"v1", "v1a"}, r.body["signature_schemes"])
	require.Equal(t, map[string]any{"schedule_seconds": []any{float64(1), float64(60), float64(3600)}}, r.body["retry_policy"])
	id := r.body["id"].(string)

	cleared := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"max_concurrency":null,"rate_limit":null,"ordering":"unordered","signature_schemes":["v1"]}`)
	require.Equal(t, 200, cleared.code, cleared.raw)
	require.Nil(t, cleared.body["max_concurrency"])
	require.Nil(t, cleared.body["rate_limit"])
	require.Equal(t, "unordered", cleared.body["ordering"])
	require.Equal(t, []any{"v1"}, cleared.body["signature_schemes"])
	require.NotNil(t, cleared.body["retry_policy"], "absent fields are kept")

	for name, tc := range map[string]struct{ body, field string }{
		"concurrency zero":       {`{"max_concurrency":0}`, "max_concurrency"},
		"concurrency not number": {`{"max_concurrency":"4"}`, "max_concurrency"},
		"rate negative":          {`{"rate_limit":-1}`, "rate_limit"},
		"ordering unknown":       {`{"ordering":"fifo"}`, "ordering"},
		"no schemes":             {`{"signature_schemes":[]}`, "signature_schemes"},
		"unknown scheme":         {`{"signature_schemes":["v2"]}`, "signature_schemes"},
		"empty schedule":         {`{"retry_policy":{"schedule_seconds":[]}}`, "retry_policy.schedule_seconds"},
		"zero wait":              {`{"retry_policy":{"schedule_seconds":[5,0]}}`, "retry_policy.schedule_seconds"},
		"wait over a week":       {`{"retry_policy":{"schedule_seconds":[604801]}}`, "retry_policy.schedule_seconds"},
	} {
		r := b.do(t, "PATCH", "/v1/subscriptions/"+id, tc.body)
		require.Equal(t, 422, r.code, name)
		require.Equal(t, tc.field, fieldOf(r), name)
	}
}

// TestPublicKeyVerifiesV1a: the public key the API hands out verifies the v1a
// signatures made with the subscription's signing key, in every form, and a
// rotation lists the previous key until the overlap ends.
func TestPublicKeyVerifiesV1a(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewDB(t)
	b := serve(t, pool, api.Config{Tokens: []string{token}, MaxBodyBytes: 4096}, logging.Discard())
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"],"signature_schemes":["v1a"]}`)
	require.Equal(t, 201, r.code, r.raw)
	id := r.body["id"].(string)
	keys := b.do(t, "GET", "/v1/subscriptions/"+id+"/public-key", "")
	require.Equal(t, 200, keys.code, keys.raw)
	require.Equal(t, r.body["public_key"], keys.body["public_key"])
	require.NotContains(t, keys.body, "previous")
	require.NotContains(t, keys.raw, "whsk_", "the signing key never leaves the platform")

	sg, err := delivery.NewStore(pool).SigningSecrets(context.Background(), uuid.MustParse(id))
	require.NoError(t, err)
	edKey, err := signature.SigningKey(*sg.SigningKey)
	require.NoError(t, err)
	now := time.Now()
	sig := signature.SignV1a(edKey, "msg_1", now, []byte(`{"a":1}`))
	ts := now.Unix()
	require.NoError(t, signature.VerifyV1a(keys.body["public_key"].(string), "msg_1", strconv.FormatInt(ts, 10), sig, []byte(`{"a":1}`), now, time.Minute))
	jwk := keys.body["jwk"].(map[string]any)
	require.Equal(t, "OKP", jwk["kty"])
	require.Equal(t, "Ed25519", jwk["crv"])

	rot := b.do(t, "POST", "/v1/subscriptions/"+id+"/secret:rotate", `{"overlap_seconds":600}`)
	require.Equal(t, 200, rot.code, rot.raw)
	after := b.do(t, "GET", "/v1/subscriptions/"+id+"/public-key", "")
	require.Equal(t, 200, after.code)
	require.NotEqual(t, keys.body["public_key"], after.body["public_key"], "a rotation issues a new key pair")
	require.Equal(t, keys.body["public_key"], after.body["previous"].(map[string]any)["public_key"])
	require.Contains(t, after.body, "previous_until")
	require.Equal(t, 404, b.do(t, "GET", "/v1/subscriptions/"+uuid.NewString()+"/public-key", "").code)
}

// TestEnableResumesAndReplaysMissed: re-enabling a disabled subscription makes
// it active, forgets its failures, and with replay_missed creates deliveries
// for the events accepted while it was disabled.
func TestEnableResumesAndReplaysMissed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"]}`)
	id := r.body["id"].(string)
	off := b.do(t, "PATCH", "/v1/subscriptions/"+id, `{"state":"disabled","disabled_reason":"maintenance"}`)
	require.Equal(t, 200, off.code)
	require.NotNil(t, off.body["disabled_at"])
	for range 3 {
		require.Equal(t, 202, b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":{}}`).code)
	}
	on := b.do(t, "POST", "/v1/subscriptions/"+id+":enable", `{"replay_missed":true}`)
	require.Equal(t, 200, on.code, on.raw)
	sub := on.body["subscription"].(map[string]any)
	require.Equal(t, "active", sub["state"])
	require.NotContains(t, sub, "disabled_at")
	require.NotContains(t, sub, "disabled_reason")
	require.Equal(t, float64(3), on.body["replayed"])
	dl := b.do(t, "GET", "/v1/deliveries?subscription_id="+id, "")
	require.Len(t, dl.body["data"], 3)

	// Enabling an active subscription is harmless; without a body nothing is replayed.
	again := b.do(t, "POST", "/v1/subscriptions/"+id+":enable", "")
	require.Equal(t, 200, again.code, again.raw)
	require.Equal(t, float64(0), again.body["replayed"])
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/"+uuid.NewString()+":enable", "").code)
	require.Equal(t, 404, b.do(t, "POST", "/v1/subscriptions/"+id+":explode", "").code)
}

// TestPlatformTypesAreReserved: ecs.subscription.disabled exists from the
// start so operators can subscribe to it, but nobody else creates or publishes
// types under ecs.
func TestPlatformTypesAreReserved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	et := b.do(t, "GET", "/v1/event-types/"+delivery.EventSubscriptionDisabled, "")
	require.Equal(t, 200, et.code)
	require.Equal(t, 201, b.do(t, "POST", "/v1/subscriptions", `{"url":"https://ops.example/hook","event_types":["ecs.subscription.disabled"]}`).code)
	r := b.do(t, "POST", "/v1/event-types", `{"name":"ecs.mine"}`)
	require.Equal(t, 422, r.code)
	require.Equal(t, "name", fieldOf(r))
	p := b.do(t, "POST", "/v1/events", `{"type":"ecs.subscription.disabled","data":{}}`)
	require.Equal(t, 422, p.code)
	require.Equal(t, "type", fieldOf(p))
}

// TestPublicKeyOfAnOlderSubscription: a subscription stored before v1a existed
// (no signing key) gets one on first request, and keeps it.
func TestPublicKeyOfAnOlderSubscription(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewDB(t)
	b := serve(t, pool, api.Config{Tokens: []string{token}, MaxBodyBytes: 4096}, logging.Discard())
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"]}`)
	id := r.body["id"].(string)
	_, err := pool.Exec(context.Background(), `UPDATE subscriptions SET signing_key = NULL WHERE id = $1`, id)
	require.NoError(t, err)
	first := b.do(t, "GET", "/v1/subscriptions/"+id+"/public-key", "")
	require.Equal(t, 200, first.code, first.raw)
	second := b.do(t, "GET", "/v1/subscriptions/"+id+"/public-key", "")
	require.Equal(t, first.body["public_key"], second.body["public_key"])
	require.Equal(t, first.body["public_key"], b.do(t, "GET", "/v1/subscriptions/"+id, "").body["public_key"])
}

// TestReplayAppliesTheFilter: replaying what a disabled subscription missed
// creates deliveries only for the events its filter accepts, as the worker
// would have.
func TestReplayAppliesTheFilter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/a","event_types":["order.paid"],
		"filter":"data.amount > 100","state":"disabled"}`)
	require.Equal(t, 201, r.code, r.raw)
	id := r.body["id"].(string)
	for _, body := range []string{`{"amount":50}`, `{"amount":150}`, `{"other":1}`, `{"amount":500}`} {
		require.Equal(t, 202, b.do(t, "POST", "/v1/events", `{"type":"order.paid","data":`+body+`}`).code)
	}
	on := b.do(t, "POST", "/v1/subscriptions/"+id+":enable", `{"replay_missed":true}`)
	require.Equal(t, 200, on.code, on.raw)
	require.Equal(t, float64(2), on.body["replayed"], "150 and 500 pass; 50 fails; a missing field counts as false")
	again := b.do(t, "POST", "/v1/subscriptions/"+id+":replay", `{"since":"2020-01-01T00:00:00Z"}`)
	require.Equal(t, 202, again.code, again.raw)
	require.Equal(t, float64(2), again.body["deliveries"], "a replay re-sends those two and creates no others")
}

// TestSubscriptionListPagesAndFilters: the list is paged by cursor, oldest
// first, and filtered by state.
func TestSubscriptionListPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 201, b.do(t, "POST", "/v1/event-types", `{"name":"order.paid"}`).code)
	var ids []any
	for i := range 5 {
		state := "active"
		if i%2 == 1 {
			state = "disabled"
		}
		r := b.do(t, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/`+strconv.Itoa(i)+`","event_types":["order.paid"],"state":"`+state+`"}`)
		require.Equal(t, 201, r.code, r.raw)
		ids = append(ids, r.body["id"])
	}
	var got []any
	path := "/v1/subscriptions?limit=2"
	for pages := 0; path != ""; pages++ {
		require.Less(t, pages, 4)
		r := b.do(t, "GET", path, "")
		require.Equal(t, 200, r.code, r.raw)
		for _, s := range r.body["data"].([]any) {
			got = append(got, s.(map[string]any)["id"])
		}
		path = ""
		if c, ok := r.body["next_cursor"].(string); ok {
			path = "/v1/subscriptions?limit=2&cursor=" + c
		}
	}
	require.Equal(t, ids, got)
	disabled := b.do(t, "GET", "/v1/subscriptions?state=disabled", "")
	require.Len(t, disabled.body["data"], 2)
	require.Equal(t, 422, b.do(t, "GET", "/v1/subscriptions?state=sleepy", "").code)
	require.Equal(t, 422, b.do(t, "GET", "/v1/subscriptions?cursor=!!", "").code)
}
