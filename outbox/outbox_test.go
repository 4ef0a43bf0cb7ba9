package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

type testBundle struct {
	store *outbox.Store
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	store := outbox.NewStore(pool, func(n string) string { return "ecs.events." + n })
	_, err := store.CreateEventType(context.Background(), "order.created", outbox.EventTypeSpec{Description: "an order", Enabled: true})
	require.NoError(t, err)
	return &testBundle{store: store}
}

func TestEventTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.store.CreateEventType(ctx, "order.created", outbox.EventTypeSpec{Enabled: true})
	require.ErrorIs(t, err, outbox.ErrEventTypeExists)
	et, err := b.store.CreateEventType(ctx, "a.b", outbox.EventTypeSpec{Description: "d", Enabled: true})
	require.NoError(t, err)
	require.Equal(t, "ecs.events.a.b", et.Topic)
	list, more, err := b.store.ListEventTypes(ctx, "", 10, false)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.False(t, more)
	require.Equal(t, "a.b", list[0].Name)
}

func TestValidEventTypeName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"order.created": true, "a": true, "user_profile.v2.updated": true,
		"": false, "Order.created": false, "order..created": false, ".x": false, "x.": false,
		"order created": false, "1order": false, "ordér": false,
	} {
		require.Equal(t, want, outbox.ValidEventTypeName(name), name)
	}
}

func TestPublishWritesEventAndOutboxTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ev, replayed, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k1", Data: json.RawMessage(`{ "b": 1, "a": [1, 2] }`)})
	require.NoError(t, err)
	require.False(t, replayed)
	got, err := b.store.GetEvent(ctx, ev.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"b":1,"a":[1,2]}`, string(got.Data))
	require.Equal(t, `{"b":1,"a":[1,2]}`, string(got.Data), "data kept compact, in the producer's key order")
	require.Equal(t, "k1", got.Key)

	_, _, err = b.store.Publish(ctx, outbox.NewEvent{Type: "nope", Data: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, outbox.ErrUnknownEventType)
	_, _, err = b.store.Publish(ctx, outbox.NewEvent{Type: "nope", Data: json.RawMessage(`{}`), IdempotencyKey: "k"})
	require.ErrorIs(t, err, outbox.ErrUnknownEventType)
}

func TestPublishIdempotentConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 16
	ids := make(chan string, n)
	var replays sync.WaitGroup
	for i := range n {
		replays.Add(1)
		go func() {
			defer replays.Done()
			// Whitespace differs between tries; the request is the same.
			data := `{"x":1}`
			if i%2 == 1 {
				data = `{ "x" : 1 }`
			}
			ev, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Data: json.RawMessage(data), IdempotencyKey: "same"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- ev.ID.String()
		}()
	}
	replays.Wait()
	close(ids)
	seen := map[string]int{}
	for id := range ids {
		seen[id]++
	}
	require.Len(t, seen, 1, "every concurrent try returns the same event")

	_, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Data: json.RawMessage(`{"x":2}`), IdempotencyKey: "same"})
	require.True(t, errors.Is(err, outbox.ErrIdempotencyReused))
}

func TestWebhookBody(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	got := outbox.WebhookBody("order.created", ts, []byte(`{"a":1}`))
	require.Equal(t, `{"type":"order.created","timestamp":"2026-01-02T02:04:05.123456Z","data":{"a":1}}`, string(got))
	require.True(t, json.Valid(got))
}

func TestKeySeqIsGapFreePerKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	seqs := make(chan int64, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idem := ""
			if i%2 == 0 {
				idem = "idem-" + string(rune('a'+i))
			}
			ev, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{}`), IdempotencyKey: idem})
			if err != nil {
				t.Error(err)
				return
			}
			seqs <- ev.KeySeq
		}()
	}
	wg.Wait()
	close(seqs)
	got := map[int64]bool{}
	for s := range seqs {
		got[s] = true
	}
	for i := int64(1); i <= 40; i++ {
		require.True(t, got[i], "key_seq %d missing: %v", i, got)
	}
	// A replay, a reused key and an unknown type take no number.
	_, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{}`), IdempotencyKey: "idem-a"})
	require.NoError(t, err)
	_, _, err = b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{"x":1}`), IdempotencyKey: "idem-a"})
	require.ErrorIs(t, err, outbox.ErrIdempotencyReused)
	_, _, err = b.store.Publish(ctx, outbox.NewEvent{Type: "nope", Key: "k", Data: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, outbox.ErrUnknownEventType)
	ev, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.Equal(t, int64(41), ev.KeySeq)
	other, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.Zero(t, other.KeySeq, "events without a key have no sequence")
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.store.CreateEventType(ctx, "order.paid", outbox.EventTypeSpec{Enabled: true, Schema: json.RawMessage(`{"required":["amount"]}`)})
	require.NoError(t, err)
	first, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{"n":0}`), IdempotencyKey: "before"})
	require.NoError(t, err)

	evs := []outbox.NewEvent{
		{Type: "order.created", Key: "k", Data: json.RawMessage(`{"n":1}`)},
		{Type: "nope", Data: json.RawMessage(`{}`)},
		{Type: "order.paid", Key: "k", Data: json.RawMessage(`{}`)},                                   // off the schema
		{Type: "order.paid", Key: "k", Data: json.RawMessage(`{"amount":1}`), IdempotencyKey: "i1"},   // accepted
		{Type: "order.created", Key: "k", Data: json.RawMessage(`{"n":0}`), IdempotencyKey: "before"}, // replay of an earlier event
		{Type: "order.created", Data: json.RawMessage(`{"n":9}`), IdempotencyKey: "before"},           // reuse, another request
		{Type: "order.created", Key: "other", Data: json.RawMessage(`{}`)},
		{Type: "order.paid", Key: "k", Data: json.RawMessage(`{"amount":1}`), IdempotencyKey: "i1"}, // same key twice in the batch
	}
	res, err := b.store.PublishBatch(ctx, evs)
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.ErrorIs(t, res[1].Err, outbox.ErrUnknownEventType)
	var se *outbox.SchemaError
	require.True(t, errors.As(res[2].Err, &se))
	require.NoError(t, res[3].Err)
	require.NoError(t, res[4].Err)
	require.True(t, res[4].Replayed)
	require.Equal(t, first.ID, res[4].Event.ID)
	require.ErrorIs(t, res[5].Err, outbox.ErrIdempotencyReused)
	require.NoError(t, res[6].Err)
	require.NoError(t, res[7].Err)
	require.True(t, res[7].Replayed)
	require.Equal(t, res[3].Event.ID, res[7].Event.ID)

	// Key numbers continue gap-free in batch order after the single publish.
	require.Equal(t, int64(2), res[0].Event.KeySeq)
	require.Equal(t, int64(3), res[3].Event.KeySeq)
	require.Equal(t, int64(1), res[6].Event.KeySeq)
	got, err := b.store.GetEvent(ctx, res[3].Event.ID)
	require.NoError(t, err)
	require.Equal(t, int64(3), got.KeySeq)
	next, _, err := b.store.Publish(ctx, outbox.NewEvent{Type: "order.created", Key: "k", Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.Equal(t, int64(4), next.KeySeq)
}

func TestPublishBatchesConcurrentlyKeepKeySeqsGapFree(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	seqs := make(chan int64, 400)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var evs []outbox.NewEvent
			for i := range 50 {
				key := []string{"a", "b"}[(w+i)%2] // opposite key orders: a deadlock would show
				evs = append(evs, outbox.NewEvent{Type: "order.created", Key: key, Data: json.RawMessage(`{}`)})
			}
			res, err := b.store.PublishBatch(ctx, evs)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range res {
				if r.Err != nil {
					t.Error(r.Err)
				}
				if r.Event.Key == "a" {
					seqs <- r.Event.KeySeq
				}
			}
		}()
	}
	wg.Wait()
	close(seqs)
	got := map[int64]bool{}
	for s := range seqs {
		require.False(t, got[s], "key_seq %d twice", s)
		got[s] = true
	}
	for i := int64(1); i <= 200; i++ {
		require.True(t, got[i], "key_seq %d missing", i)
	}
}
