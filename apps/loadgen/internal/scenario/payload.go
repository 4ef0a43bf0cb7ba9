package scenario

import (
	"crypto/sha256"
	"strconv"
)

// The benchmark event: an order with a fresh key (its order id) and an
// idempotency key, as a producer that retries safely sends it. Its data is
// about 90 bytes:
//
//	{"order_id":17,"amount":42.5,"currency":"EUR","customer":"c-17","items":3}
//
// pgbench (pgbench.go) and the COPY ceiling (batch.go) write the same rows.

// appendData appends the data of order n.
func appendData(b []byte, n int64) []byte {
	b = append(b, `{"order_id":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `,"amount":42.5,"currency":"EUR","customer":"c-`...)
	b = strconv.AppendInt(b, n%1000, 10)
	return append(b, `","items":3}`...)
}

// names returns the event key and idempotency key of order n in scenario tag.
func names(tag string, n int64) (key, idem string) {
	s := strconv.FormatInt(n, 10)
	return tag + "-o-" + s, tag + "-i-" + s
}

// singleEvent is the body of POST /v1/events.
func singleEvent(b []byte, typ, key string, n int64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","key":"`...)
	b = append(b, key...)
	b = append(b, `","data":`...)
	b = appendData(b, n)
	return append(b, '}')
}

// batchBody is the body of POST /v1/events:batch with orders first..first+n-1.
func batchBody(b []byte, tag, typ string, first int64, n int) []byte {
	b = append(b, `{"events":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		key, idem := names(tag, first+int64(i))
		b = append(b, `{"type":"`...)
		b = append(b, typ...)
		b = append(b, `","key":"`...)
		b = append(b, key...)
		b = append(b, `","idempotency_key":"`...)
		b = append(b, idem...)
		b = append(b, `","data":`...)
		b = appendData(b, first+int64(i))
		b = append(b, '}')
	}
	return append(b, `]}`...)
}

// requestHash is a stand-in for the API's idempotency fingerprint: the same
// size (SHA-256), computed the same way per event.
func requestHash(typ, key string, data []byte) []byte {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte(key))
	h.Write(data)
	return h.Sum(nil)
}
