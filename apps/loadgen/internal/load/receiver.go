package load

import (
	"context"
	"errors"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventconfigservice/ecs/delivery/signature"
)

const receiverShards = 64

// Receiver is a fast local webhook subscriber: it answers 204 at once and
// records when each (path, webhook-id) first arrived.
type Receiver struct {
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	seed   maphash.Seed
	shards [receiverShards]struct {
		mu sync.Mutex
		at map[string]time.Time
	}
	unique, dups atomic.Int64
	serveErr     error // set when Serve returns; read after done is closed
}

// StartReceiver listens on a free loopback port.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{ln: ln, done: make(chan struct{}), seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].at = map[string]time.Time{}
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(r.done)
		r.serveErr = r.srv.Serve(ln)
	}()
	return r, nil
}

// URL of path on the receiver.
func (r *Receiver) URL(path string) string { return "http://" + r.ln.Addr().String() + path }

// ServeHTTP records the arrival, drains the body and answers 204.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	key := req.URL.Path + "|" + req.Header.Get(signature.HeaderID)
	s := &r.shards[maphash.String(r.seed, key)%receiverShards]
	s.mu.Lock()
	_, seen := s.at[key]
	if !seen {
		s.at[key] = now
	}
	s.mu.Unlock()
	if seen {
		r.dups.Add(1)
	} else {
		r.unique.Add(1)
	}
	_, _ = io.Copy(io.Discard, req.Body)
	w.WriteHeader(http.StatusNoContent)
}

// Unique is how many distinct (path, webhook-id) pairs arrived; Dups how many
// arrived again.
func (r *Receiver) Unique() int64 { return r.unique.Load() }

// Dups counts repeated arrivals.
func (r *Receiver) Dups() int64 { return r.dups.Load() }

// Arrival returns when webhook id first arrived on path.
func (r *Receiver) Arrival(path, id string) (time.Time, bool) {
	key := path + "|" + id
	s := &r.shards[maphash.String(r.seed, key)%receiverShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[key]
	return t, ok
}

// WaitUnique waits until at least n unique arrivals were recorded or ctx ends,
// and says whether they were.
func (r *Receiver) WaitUnique(ctx context.Context, n int64) bool {
	for r.Unique() < n {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// Close stops the server.
func (r *Receiver) Close(ctx context.Context) {
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
	}
	<-r.done
}

// Err reports why the server stopped serving early (nil after Close).
func (r *Receiver) Err() error {
	select {
	case <-r.done:
		if errors.Is(r.serveErr, http.ErrServerClosed) {
			return nil
		}
		return r.serveErr
	default:
		return nil
	}
}
