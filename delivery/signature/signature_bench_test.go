package signature_test

import (
	"testing"
	"time"

	"github.com/eventconfigservice/ecs/delivery/signature"
)

// BenchmarkSign signs one webhook of about 150 bytes, as the worker does for
// every attempt.
//
//	go test -run '^$' -bench . -benchmem ./delivery/signature/
func BenchmarkSign(b *testing.B) {
	secret, err := signature.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	key, err := signature.Key(secret)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"type":"order.created","timestamp":"2026-01-02T03:04:05.000006Z","data":{"order_id":17,"amount":42.5,"currency":"EUR","customer":"c-17","items":3}}`)
	ts := time.Unix(1767323045, 0)
	b.ReportAllocs()
	for b.Loop() {
		_ = signature.Sign(key, "0190d0e4-7d8a-7b3c-9f1e-2a3b4c5d6e7f", ts, body)
	}
}
