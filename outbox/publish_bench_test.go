package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
)

// The benchmarks write to a real PostgreSQL (dbtest: fsync off), so they
// measure the Go side of a publish plus one round trip, not disk latency; the
// load generator (apps/loadgen) measures the platform on durable settings.
//
//	go test -run '^$' -bench . -benchmem ./outbox/

var benchSchema = json.RawMessage(`{"type":"object","required":["order_id","amount"],"properties":{` +
	`"order_id":{"type":"integer"},"amount":{"type":"number"},"currency":{"type":"string"},` +
	`"customer":{"type":"string"},"items":{"type":"integer"}}}`)

func benchStore(b *testing.B) *outbox.Store {
	b.Helper()
	pool, _ := dbtest.NewDB(b)
	store := outbox.NewStore(pool, func(n string) string { return "ecs.events." + n })
	if _, err := store.CreateEventType(context.Background(), "order.created", outbox.EventTypeSpec{Enabled: true, Schema: benchSchema}); err != nil {
		b.Fatal(err)
	}
	return store
}

// benchEvent is order n: a fresh key, an idempotency key, about 90 bytes of data.
func benchEvent(n int64) outbox.NewEvent {
	s := strconv.FormatInt(n, 10)
	return outbox.NewEvent{
		Type: "order.created", Key: "o-" + s, IdempotencyKey: "i-" + s,
		Data: json.RawMessage(`{"order_id":` + s + `,"amount":42.5,"currency":"EUR","customer":"c-` + s + `","items":3}`),
	}
}

// BenchmarkPublish is one event per call, one caller.
func BenchmarkPublish(b *testing.B) {
	store := benchStore(b)
	ctx := context.Background()
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		n++
		if _, _, err := store.Publish(ctx, benchEvent(n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is one event per call from 8 callers per CPU, so
// concurrent commits share WAL flushes and relay wake-ups.
func BenchmarkPublishParallel(b *testing.B) {
	store := benchStore(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := store.Publish(ctx, benchEvent(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
}

// BenchmarkPublishBatch is one batch of 100 or 1,000 events per call.
func BenchmarkPublishBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			store := benchStore(b)
			ctx := context.Background()
			var n int64
			evs := make([]outbox.NewEvent, size)
			b.ReportAllocs()
			start := time.Now()
			calls := 0
			for b.Loop() {
				for i := range evs {
					n++
					evs[i] = benchEvent(n)
				}
				res, err := store.PublishBatch(ctx, evs)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				calls++
			}
			b.ReportMetric(float64(calls*size)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkWebhookBody builds the body every subscriber receives (the Kafka
// record value the relay produces).
func BenchmarkWebhookBody(b *testing.B) {
	data := []byte(`{"order_id":17,"amount":42.5,"currency":"EUR","customer":"c-17","items":3}`)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		_ = outbox.WebhookBody("order.created", ts, data)
	}
}
