// Package sender makes one webhook attempt: a signed HTTP POST with a timeout,
// 2xx as success, and the first KiB of the response kept for the delivery log.
package sender

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/signature"
)

// ResponseBodyLimit is how much of a response body the delivery log keeps.
const ResponseBodyLimit = 1024

// drainLimit is how much more of a body is read so the connection can be reused;
// a larger body closes the connection instead.
const drainLimit = 64 << 10

// Config tunes the HTTP client.
type Config struct {
	// Timeout bounds one attempt, connection set-up included
	// (ECS_WORKER_HTTP_TIMEOUT, default 15s).
	Timeout time.Duration
	// MaxConnsPerHost caps connections to one subscriber host (default 64).
	MaxConnsPerHost int
	// UserAgent is sent with every request (default "EventConfigService/1").
	UserAgent string
	// Egress says which addresses may be dialled; every connection is checked
	// against the address it resolved to (ECS_OUTBOUND_ALLOW_NETWORKS; default:
	// public addresses only, so private, loopback, link-local and reserved ones
	// are refused).
	Egress egress.Config
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.MaxConnsPerHost == 0 {
		c.MaxConnsPerHost = 64
	}
	if c.UserAgent == "" {
		c.UserAgent = "EventConfigService/1"
	}
	return c
}

// Request is one attempt to make.
type Request struct {
	URL string
	// ID is the webhook-id: the same on every retry, so subscribers can dedup.
	ID   string
	Body []byte
	// Keys sign the request: the subscription's key (signature.Key of its
	// secret), then, during a secret rotation, the previous one. Each gives one
	// signature in webhook-signature.
	Keys [][]byte
	// SigningKeys, when the subscription asked for v1a, add one ed25519
	// signature each (current key, then the previous one during a rotation).
	SigningKeys []ed25519.PrivateKey
	// Headers are the subscription's own; they cannot replace the signature
	// headers or Content-Type, which are set after them.
	Headers map[string]string
	// Timeout bounds the attempt (0: Config.Timeout).
	Timeout time.Duration
}

// Result is what one attempt did.
type Result struct {
	StatusCode   int // 0 when no response arrived
	Latency      time.Duration
	Err          error // transport error or non-2xx status
	ResponseBody string
	// RetryAfter is the wait a 429 or 503 asked for in Retry-After (0: none).
	RetryAfter time.Duration
}

// Succeeded reports a 2xx answer.
func (r Result) Succeeded() bool { return r.Err == nil && r.StatusCode >= 200 && r.StatusCode < 300 }

// Sender posts webhooks.
type Sender struct {
	client *http.Client
	cfg    Config
	now    func() time.Time
}

// New returns a Sender.
func New(cfg Config) *Sender {
	cfg = cfg.WithDefaults()
	// The guard checks every address dialled, after resolution, so a host name
	// that resolves somewhere forbidden (DNS rebinding) is refused too.
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, Control: egress.New(cfg.Egress).Control}
	tr := &http.Transport{
		Proxy:               nil, // never route subscriber traffic through an environment proxy
		DialContext:         dialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: cfg.MaxConnsPerHost,
		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Sender{
		cfg: cfg,
		now: time.Now,
		client: &http.Client{
			Transport: tr, // each request's context carries its timeout
			// A redirect is answered as it is (a 3xx failure), never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Send makes one attempt.
func (s *Sender) Send(ctx context.Context, req Request) Result {
	start := s.now()
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = s.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return Result{Err: fmt.Errorf("build request: %w", err)}
	}
	for k, v := range req.Headers {
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", s.cfg.UserAgent)
	hreq.Header.Set(signature.HeaderID, req.ID)
	hreq.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	sigs := make([]string, 0, len(req.Keys)+len(req.SigningKeys))
	for _, k := range req.Keys {
		sigs = append(sigs, signature.Sign(k, req.ID, start, req.Body))
	}
	for _, k := range req.SigningKeys {
		sigs = append(sigs, signature.SignV1a(k, req.ID, start, req.Body))
	}
	hreq.Header.Set(signature.HeaderSignature, strings.Join(sigs, " "))

	resp, err := s.client.Do(hreq)
	if err != nil {
		return Result{Latency: time.Since(start), Err: classify(err)}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, ResponseBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	res := Result{StatusCode: resp.StatusCode, Latency: time.Since(start), ResponseBody: Clean(head)}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res.Err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), s.now())
	}
	return res
}

// retryAfter reads Retry-After: delay-seconds or an HTTP date (RFC 9110).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// CloseIdle closes idle connections.
func (s *Sender) CloseIdle() { s.client.CloseIdleConnections() }

func classify(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timeout: %w", err)
	}
	return err
}

// Clean makes bytes storable as PostgreSQL text: valid UTF-8 without NUL.
func Clean(b []byte) string {
	return strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", "")
}
