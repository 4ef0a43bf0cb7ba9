package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventconfigservice/ecs/delivery/signature"
)

// receiver is a subscriber endpoint that behaves as a Standard Webhooks consumer
// should: it verifies the signature and deduplicates by webhook-id. It counts
// every 2xx it answered per webhook-id, so a second successful delivery of one
// id is visible.
type receiver struct {
	name   string
	srv    *httptest.Server
	secret atomic.Pointer[string]
	// failEvery > 0 answers 500 to every failEvery-th request.
	failEvery int64
	// delay is how long the subscriber takes to answer.
	delay time.Duration

	requests atomic.Int64
	mu       sync.Mutex
	ok       map[string]int     // webhook-id -> 2xx answers
	seqs     map[string][]int64 // event key -> seq, in order of first success
	badSig   int
	want     map[string]bool // webhook-ids expected; done closes when all arrived
	done     chan struct{}
	sealed   bool // every expected id is known
	closed   bool
}

type payload struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		Key string `json:"key"`
		Seq int64  `json:"seq"`
	} `json:"data"`
}

func newReceiver(t *testing.T, name string, failEvery int64, delay time.Duration) *receiver {
	r := &receiver{name: name, failEvery: failEvery, delay: delay,
		ok: map[string]int{}, seqs: map[string][]int64{}, want: map[string]bool{}, done: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := r.requests.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.delay > 0 {
		time.Sleep(r.delay) // the subscriber's own processing time
	}
	if r.failEvery > 0 && n%r.failEvery == 0 {
		http.Error(w, "flaky subscriber says no", http.StatusInternalServerError)
		return
	}
	id := req.Header.Get(signature.HeaderID)
	secret := r.secret.Load()
	if secret == nil || signature.Verify(*secret, id, req.Header.Get(signature.HeaderTimestamp),
		req.Header.Get(signature.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.ok[id]++
	if r.ok[id] == 1 {
		r.seqs[p.Data.Key] = append(r.seqs[p.Data.Key], p.Data.Seq)
	}
	r.checkDone()
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// expect adds an id the receiver must get. Call before the id can arrive.
func (r *receiver) expect(id string) {
	r.mu.Lock()
	r.want[id] = true
	r.mu.Unlock()
}

// sealed closes done once every expected id arrived; call after the last expect.
func (r *receiver) seal() {
	r.mu.Lock()
	r.sealed = true
	r.checkDone()
	r.mu.Unlock()
}

func (r *receiver) checkDone() {
	if r.closed || !r.sealed {
		return
	}
	for id := range r.want {
		if r.ok[id] == 0 {
			return
		}
	}
	r.closed = true
	close(r.done)
}

// progress reports received/expected, for failure messages.
func (r *receiver) progress() (got, want int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.want {
		if r.ok[id] > 0 {
			got++
		}
	}
	return got, len(r.want)
}

// successCount is how many distinct ids got at least one 2xx.
func (r *receiver) successCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ok)
}
