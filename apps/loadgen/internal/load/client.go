package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client calls the API with a bearer token over keep-alive connections.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient keeps up to conns idle connections to base.
func NewClient(base, token string, conns int) *Client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &Client{base: base, token: token, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Close drops the idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Post sends body to path and returns the status and the answer. hdr holds
// header name/value pairs.
func (c *Client) Post(ctx context.Context, path string, body []byte, hdr ...string) (int, []byte, error) {
	return c.do(ctx, http.MethodPost, path, body, hdr...)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// JSON sends in as JSON and decodes a 2xx answer into out (when not nil); any
// other status is an error that quotes the answer.
func (c *Client) JSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	code, raw, err := c.do(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, code, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// EventType creates an event type with schema (nil: none) and returns its version.
func (c *Client) EventType(ctx context.Context, name string, schema json.RawMessage) (int, error) {
	in := map[string]any{"name": name}
	if schema != nil {
		in["schema"] = schema
	}
	var out struct {
		Version int `json:"version"`
	}
	err := c.JSON(ctx, http.MethodPost, "/v1/event-types", in, &out)
	return out.Version, err
}

// Subscribe subscribes url to the event types and returns the subscription id.
func (c *Client) Subscribe(ctx context.Context, url string, types ...string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := c.JSON(ctx, http.MethodPost, "/v1/subscriptions", map[string]any{"url": url, "event_types": types}, &out)
	return out.ID, err
}
