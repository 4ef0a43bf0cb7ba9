package api_test

// Contract tests: docs/event-config-openapi.yaml (OpenAPI 3.1) against the
// server. TestSpecCoversEveryRoute keeps the document and the routes in step,
// TestSpecScopesMatchServer checks every operation's x-required-scope, and
// validating() checks every request and response of a test server against the
// document (TestResponsesMatchSpec drives a representative flow through it).
// TestWebhookMatchesAsyncAPISpec ties docs/event-webhook-asyncapi.yaml to the
// headers and body the platform actually sends.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/eventconfigservice/ecs/api"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/docs"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
)

// contractToken is an ECS_API_TOKENS token: every scope.
const contractToken = "contract-test-token-0123456789"

// contractSpec is docs.OpenAPI, parsed once per test binary.
var contractSpec = sync.OnceValues(func() (*v3.Document, error) {
	doc, err := libopenapi.NewDocument(docs.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("parse docs/event-config-openapi.yaml: %w", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		return nil, fmt.Errorf("docs/event-config-openapi.yaml is OpenAPI %q, want 3.1.0", v)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build the OpenAPI model of docs/event-config-openapi.yaml: %w", err)
	}
	return &m.Model, nil
})

// contractValidator validates requests and responses against contractSpec. It
// is shared by every test (the validator is safe for concurrent use).
var contractValidator = sync.OnceValues(func() (validator.Validator, error) {
	m, err := contractSpec()
	if err != nil {
		return nil, err
	}
	return validator.NewValidatorFromV3Model(m,
		config.WithPathTree(templateRoutes{}),
		config.WithFormatAssertions(), // uuid, date-time, uri are checked, not just documented
		config.WithStrictMode(),       // a field or parameter the document does not name is an error...
		config.WithStrictIgnorePaths(freeForm...),
	), nil
})

// freeForm are the places whose contents are the caller's own JSON (event data,
// JSON Schemas and examples, audit snapshots, readiness checks), which strict
// mode must not hold to declared properties.
var freeForm = []string{
	"$.body.data.*",                         // an event's data: publish, test, GET /v1/events/{id}
	"$.body.data[*].data.*",                 // events in a list
	"$.body.data[*].event.data.*",           // batch results
	"$.body.events[*].data.*",               // batch requests
	"$.body.schema.*", "$.body.examples[*]", // an event type
	"$.body.data[*].schema.*", "$.body.data[*].examples[*]", // event types in a list
	"$.body.data[*].before.*", "$.body.data[*].after.*", // audit entries
	"$.body.data[*].headers.*", "$.body.data[*].body.data.*", // dead letters
	"$.body.checks.*", // GET /readyz
}

// templateRoutes turns off the validator's radix-tree path lookup, so it matches
// paths by their templates only. The tree treats "{id}:replay" as a literal
// segment and would resolve POST /v1/subscriptions/<id>:replay to
// /v1/subscriptions/{id}, which has no POST; the template matcher prefers the
// path that has the request's method.
type templateRoutes struct{}

func (templateRoutes) Lookup(string) (*v3.PathItem, string, bool) { return nil, "", false }

func mustSpec(t *testing.T) *v3.Document {
	t.Helper()
	m, err := contractSpec()
	require.NoError(t, err)
	return m
}

// TestSpecParsesAsOpenAPI31 is the serve check: the embedded document is a valid
// OpenAPI 3.1 document for libopenapi, and the AsyncAPI one is AsyncAPI 3.0.
func TestSpecParsesAsOpenAPI31(t *testing.T) {
	t.Parallel()
	doc, err := libopenapi.NewDocument(docs.OpenAPI)
	require.NoError(t, err)
	require.Equal(t, "3.1.0", doc.GetVersion())
	_, err = doc.BuildV3Model()
	require.NoError(t, err, "libopenapi builds the model without errors")
	v, verrs := validator.NewValidator(doc)
	require.Empty(t, verrs)
	ok, errs := v.ValidateDocument()
	require.True(t, ok, "the document matches the OpenAPI 3.1 schema:%s", describe(errs))

	var async struct {
		AsyncAPI string `yaml:"asyncapi"`
	}
	require.NoError(t, yaml.Unmarshal(docs.AsyncAPI, &async))
	require.Equal(t, "3.0.0", async.AsyncAPI)
}

// contractServer builds the API the way api_test.go's setup does, plus the
// operational endpoints every production engine mounts (platform/role,
// apps/dev).
func contractServer(t *testing.T, cfg api.Config) (*gin.Engine, *pgxpool.Pool) {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	e := ecshttp.NewEngine(logging.Discard(), nil)
	ecshttp.MountOps(e, prometheus.NewRegistry(), map[string]ecshttp.Check{"postgres": pool.Ping})
	if cfg.Tokens == nil {
		cfg.Tokens = []string{contractToken}
	}
	require.NoError(t, api.Mount(t.Context(), e, cfg, pool, func(n string) string { return "ecs.events." + n }, logging.Discard()))
	return e, pool
}

// specRoutes names a gin route the way the document does: ":param" becomes
// "{param}", and the two routes that serve custom methods after a parameter
// (gin cannot route a literal ":verb" there; the handlers split it off) get
// their verbs, one operation each.
func specRoutes(method, ginPath string) []string {
	switch method + " " + ginPath {
	case "POST /v1/subscriptions/:id":
		return []string{"POST /v1/subscriptions/{id}:replay", "POST /v1/subscriptions/{id}:enable"}
	case "POST /v1/deliveries/:id":
		return []string{"POST /v1/deliveries/{id}:retry"}
	}
	return []string{specRoute(method, ginPath)}
}

// specRoute names a plain gin route the way the document does.
func specRoute(method, ginPath string) string {
	segs := strings.Split(strings.ReplaceAll(ginPath, `\:`, ":"), "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

// specOperations lists the document's operations by "METHOD path".
func specOperations(m *v3.Document) map[string]*v3.Operation {
	out := map[string]*v3.Operation{}
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			out[strings.ToUpper(method)+" "+path] = op
		}
	}
	return out
}

// requiredScope is an operation's x-required-scope, "" without one.
func requiredScope(op *v3.Operation) string {
	if op.Extensions == nil {
		return ""
	}
	if n := op.Extensions.GetOrZero("x-required-scope"); n != nil {
		return n.Value
	}
	return ""
}

func TestSpecCoversEveryRoute(t *testing.T) {
	t.Parallel()
	m := mustSpec(t)
	e, _ := contractServer(t, api.Config{})
	documented := specOperations(m)

	served := map[string]bool{}
	for _, r := range e.Routes() {
		for _, name := range specRoutes(r.Method, r.Path) {
			served[name] = true
			if documented[name] == nil {
				t.Errorf("%s (gin %s %s) is served but not in docs/event-config-openapi.yaml", name, r.Method, r.Path)
			}
		}
	}
	for name := range documented {
		if !served[name] {
			t.Errorf("%s is in docs/event-config-openapi.yaml but no route serves it", name)
		}
	}

	// What the document promises of every operation, checked here because the
	// linters cannot know it.
	ids := map[string]string{}
	for name, op := range documented {
		require.NotEmpty(t, op.OperationId, name)
		if other, dup := ids[op.OperationId]; dup {
			t.Errorf("%s and %s share operationId %s", name, other, op.OperationId)
		}
		ids[op.OperationId] = name
		codes := map[string]bool{}
		for code := range op.Responses.Codes.KeysFromOldest() {
			codes[code] = true
		}
		if !strings.Contains(name, " /v1/") {
			if op.Security == nil || len(op.Security) != 0 {
				t.Errorf("%s: operational endpoints need no credentials: want security: []", name)
			}
			continue
		}
		if op.Security != nil {
			t.Errorf("%s: /v1 operations take the document's bearerAuth; do not override security", name)
		}
		scope := requiredScope(op)
		if !slices.Contains(api.Scopes, scope) {
			t.Errorf("%s: x-required-scope %q is not one of %v", name, scope, api.Scopes)
		}
		if !strings.Contains(op.Description, "Scope: `"+scope+"`") {
			t.Errorf("%s: the description must name the scope as \"Scope: `%s`\"", name, scope)
		}
		for _, code := range []string{"401", "403", "500"} {
			if !codes[code] {
				t.Errorf("%s: every /v1 operation can answer %s; document it", name, code)
			}
		}
		if op.RequestBody == nil {
			continue
		}
		for _, code := range []string{"400", "413", "415", "422"} {
			if !codes[code] {
				t.Errorf("%s: an operation that reads a body can answer %s; document it", name, code)
			}
		}
		for mt, media := range op.RequestBody.Content.FromOldest() {
			if mt != "application/json" {
				t.Errorf("%s: the server reads only application/json bodies, not %s", name, mt)
				continue
			}
			s := media.Schema.Schema()
			if s.AdditionalProperties == nil || !s.AdditionalProperties.IsB() || s.AdditionalProperties.B {
				t.Errorf("%s: the server refuses unknown fields: the body schema needs additionalProperties: false", name)
			}
		}
	}
}

// TestSpecScopesMatchServer checks every operation's x-required-scope against the
// server: a key with every other scope (but not admin) is refused with 403, a key
// with just that scope is let through.
func TestSpecScopesMatchServer(t *testing.T) {
	t.Parallel()
	m := mustSpec(t)
	e, _ := contractServer(t, api.Config{})
	srv := httptest.NewServer(validating(t, e))
	t.Cleanup(srv.Close)
	c := specClient{t: t, base: srv.URL, cred: contractToken}

	var plain []string // every scope but admin
	for _, s := range api.Scopes {
		if s != api.ScopeAdmin {
			plain = append(plain, s)
		}
	}
	newKey := func(scopes []string) string {
		body, err := json.Marshal(map[string]any{"name": "scope-check", "scopes": scopes})
		require.NoError(t, err)
		r := c.call("POST", "/v1/api-keys", string(body))
		require.Equal(t, 201, r.code, r.raw)
		return r.body["key"].(string)
	}
	only, without := map[string]string{}, map[string]string{}
	for _, s := range plain {
		only[s] = newKey([]string{s})
		without[s] = newKey(slices.DeleteFunc(slices.Clone(plain), func(o string) bool { return o == s }))
	}
	only[api.ScopeAdmin], without[api.ScopeAdmin] = contractToken, newKey(plain)

	for name, op := range specOperations(m) {
		method, path, _ := strings.Cut(name, " ")
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		scope := requiredScope(op)
		path = strings.NewReplacer("{id}", "01a21173-3496-795c-821c-6725ded937b2", "{name}", "order.created").Replace(path)
		body := ""
		if op.RequestBody != nil {
			body = "{}"
		}
		denied := c.with(without[scope]).call(method, path, body)
		if denied.code != 403 || !strings.Contains(denied.raw, "insufficient-scope") {
			t.Errorf("%s without %s: got %d, want 403 insufficient-scope: %s", name, scope, denied.code, denied.raw)
		}
		if allowed := c.with(only[scope]).call(method, path, body); allowed.code == 401 || allowed.code == 403 {
			t.Errorf("%s with just %s: got %d: %s", name, scope, allowed.code, allowed.raw)
		}
	}
}

// validating wraps h, a test server's handler, so that every exchange is checked
// against docs/event-config-openapi.yaml, reporting mismatches with t.Errorf:
//
//   - every response must match the document: a documented status, its headers,
//     and its body (strictly: an undocumented field is an error). /metrics bodies
//     are not checked.
//   - a request the document calls invalid must be refused (4xx or 5xx): tests
//     send bad requests on purpose, but the server accepting one means the
//     document is stricter than the server.
//   - a request for a route the document does not have must be answered 404 or
//     405 with a problem document.
//
// The request is checked before h runs and the response before it is sent, so a
// test cannot end before its errors are reported.
func validating(t *testing.T, h http.Handler) http.Handler {
	t.Helper()
	v, err := contractValidator()
	require.NoError(t, err)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		clone := func() *http.Request {
			c := r.Clone(r.Context())
			c.Body = io.NopCloser(bytes.NewReader(body))
			if len(body) > 0 && c.Header.Get("Content-Type") == "" {
				c.Header.Set("Content-Type", "application/json") // the server reads a body without one as JSON
			}
			return c
		}
		_, reqErrs := v.ValidateHttpRequestSync(clone())
		unrouted := slices.ContainsFunc(reqErrs, func(e *verrors.ValidationError) bool {
			return e.IsPathMissingError() || e.IsOperationMissingError()
		})

		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		res := rec.Result()
		what := r.Method + " " + r.URL.RequestURI()

		switch {
		case unrouted:
			if (res.StatusCode != 404 && res.StatusCode != 405) || res.Header.Get("Content-Type") != ecshttp.ProblemContentType {
				t.Errorf("%s: no such operation in docs/event-config-openapi.yaml, but the server answered %d %s: %s",
					what, res.StatusCode, res.Header.Get("Content-Type"), rec.Body.String())
			}
		case len(reqErrs) > 0 && res.StatusCode < 400:
			t.Errorf("%s: the server answered %d to a request docs/event-config-openapi.yaml calls invalid:%s",
				what, res.StatusCode, describe(reqErrs))
		case r.URL.Path == "/metrics":
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("%s: got %d %s", what, res.StatusCode, res.Header.Get("Content-Type"))
			}
		default:
			if ok, errs := v.ValidateHttpResponse(clone(), res); !ok {
				t.Errorf("%s: the %d answer does not match docs/event-config-openapi.yaml:%s\nbody: %s",
					what, res.StatusCode, describe(errs), rec.Body.String())
			}
		}

		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  - %s: %s", e.Message, e.Reason)
		for _, s := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      at %q: %s", s.FieldPath, s.Reason)
		}
	}
	return b.String()
}

// specClient calls a test server.
type specClient struct {
	t    *testing.T
	base string
	cred string // bearer credential; "" sends none
}

func (c specClient) with(cred string) specClient { c.cred = cred; return c }

type specAnswer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends a request; headers are name, value pairs (an empty value removes
// the header).
func (c specClient) call(method, path, body string, headers ...string) specAnswer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if c.cred != "" {
		req.Header.Set("Authorization", "Bearer "+c.cred)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	a := specAnswer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && raw[0] == '{' {
		require.NoError(c.t, json.Unmarshal(raw, &a.body), string(raw))
	}
	return a
}

// must checks the status of a call and returns it.
func (c specClient) must(code int, method, path, body string, headers ...string) specAnswer {
	c.t.Helper()
	a := c.call(method, path, body, headers...)
	require.Equal(c.t, code, a.code, "%s %s: %s", method, path, a.raw)
	return a
}

// problem checks that a is a problem document of the given type.
func (a specAnswer) problem(t *testing.T, code int, typ string) {
	t.Helper()
	require.Equal(t, code, a.code, a.raw)
	require.Equal(t, ecshttp.ProblemContentType, a.header.Get("Content-Type"))
	require.Equal(t, typ, a.body["type"], a.raw)
	require.Equal(t, a.header.Get("X-Request-Id"), a.body["request_id"])
}

// TestResponsesMatchSpec drives a representative flow through a server wrapped in
// validating: every exchange is checked against the document on the way.
func TestResponsesMatchSpec(t *testing.T) {
	t.Parallel()
	e, pool := contractServer(t, api.Config{MaxBodyBytes: 4096, AllowHTTPURLs: true, Egress: loopbackOK})
	srv := httptest.NewServer(validating(t, e))
	t.Cleanup(srv.Close)
	c := specClient{t: t, base: srv.URL, cred: contractToken}

	var hooks sync.Mutex
	var hookCount int
	subscriber := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Lock()
		hookCount++
		hooks.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(subscriber.Close)

	// Operational endpoints.
	c.with("").must(200, "GET", "/healthz", "")
	c.with("").must(200, "GET", "/readyz", "")
	c.with("").must(200, "GET", "/metrics", "")
	require.Equal(t, string(docs.OpenAPI), c.with("").must(200, "GET", "/openapi.yaml", "").raw)

	// Event types: create, read, list with a cursor, patch with If-Match.
	created := c.must(201, "POST", "/v1/event-types", `{"name":"order.created","description":"An order was placed.",
		"schema":{"type":"object","required":["id"],"properties":{"id":{"type":"integer"},"amount":{"type":"number","minimum":0}}},
		"examples":[{"id":1,"amount":2.5}]}`)
	require.Equal(t, `"1"`, created.header.Get("ETag"))
	require.Equal(t, "/v1/event-types/order.created", created.header.Get("Location"))
	c.must(201, "POST", "/v1/event-types", `{"name":"order.shipped","enabled":true}`)
	c.must(201, "POST", "/v1/event-types", `{"name":"invoice.paid","schema":true}`)
	c.must(409, "POST", "/v1/event-types", `{"name":"order.created"}`).problem(t, 409, "urn:ecs:problem:event-type-exists")
	got := c.must(200, "GET", "/v1/event-types/order.created", "")
	etag := got.header.Get("ETag")
	page := c.must(200, "GET", "/v1/event-types?limit=2", "")
	require.Len(t, page.body["data"], 2)
	cursor := page.body["next_cursor"].(string)
	page = c.must(200, "GET", "/v1/event-types?limit=2&include_archived=false&cursor="+url.QueryEscape(cursor), "")
	require.Len(t, page.body["data"], 2) // order.created, order.shipped after ecs.subscription.disabled, invoice.paid
	require.NotContains(t, page.body, "next_cursor")
	patched := c.must(200, "PATCH", "/v1/event-types/order.created", `{"description":"An order was placed (v2)."}`, "If-Match", etag)
	require.NotEqual(t, etag, patched.header.Get("ETag"))
	c.call("PATCH", "/v1/event-types/order.created", `{"enabled":true}`, "If-Match", etag).problem(t, 412, "urn:ecs:problem:precondition-failed")
	c.call("PATCH", "/v1/event-types/order.created", `{"schema":{"type":"nope"}}`).problem(t, 422, "urn:ecs:problem:validation")
	c.call("GET", "/v1/event-types/no.such.type", "").problem(t, 404, "about:blank")

	// Subscriptions: create, read, list, patch with If-Match, rotate, test.
	sub := c.must(201, "POST", "/v1/subscriptions", `{"url":"`+subscriber.URL+`/hook","event_types":["order.*"],
		"description":"orders","metadata":{"team":"shop"},"headers":{"X-Team":"shop"},"timeout_ms":5000}`)
	subID := sub.body["id"].(string)
	require.True(t, strings.HasPrefix(sub.body["secret"].(string), "whsec_"))
	require.Equal(t, "/v1/subscriptions/"+subID, sub.header.Get("Location"))
	c.must(201, "POST", "/v1/subscriptions", `{"url":"https://hooks.example/b","event_types":["*"],"state":"disabled",
		"disabled_reason":"not yet","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`)
	c.must(200, "GET", "/v1/subscriptions", "")
	subETag := c.must(200, "GET", "/v1/subscriptions/"+subID, "").header.Get("ETag")
	c.must(200, "PATCH", "/v1/subscriptions/"+subID, `{"state":"paused","timeout_ms":0}`, "If-Match", subETag)
	c.call("PATCH", "/v1/subscriptions/"+subID, `{"state":"active"}`, "If-Match", subETag).problem(t, 412, "urn:ecs:problem:precondition-failed")
	c.must(200, "PATCH", "/v1/subscriptions/"+subID, `{"state":"active"}`)
	rotated := c.must(200, "POST", "/v1/subscriptions/"+subID+"/secret:rotate", `{"overlap_seconds":3600}`)
	require.NotEqual(t, sub.body["secret"], rotated.body["secret"])
	require.Contains(t, rotated.body, "previous_secret_until")
	c.must(200, "POST", "/v1/subscriptions/"+subID+"/secret:rotate", "")
	attempt := c.must(200, "POST", "/v1/subscriptions/"+subID+"/test", `{"type":"order.created","data":{"id":7}}`)
	require.Equal(t, true, attempt.body["succeeded"], attempt.raw)
	require.Equal(t, float64(204), attempt.body["status_code"])
	hooks.Lock()
	require.Equal(t, 1, hookCount)
	hooks.Unlock()
	c.call("GET", "/v1/subscriptions/not-a-uuid", "").problem(t, 404, "about:blank")
	c.call("POST", "/v1/subscriptions", `{"url":"ftp://x","event_types":["nope"]}`).problem(t, 422, "urn:ecs:problem:validation")
	c.t.Run("policy fields", func(t *testing.T) {
		a := specClient{t: t, base: srv.URL, cred: contractToken}.call("POST", "/v1/subscriptions",
			`{"url":"https://hooks.example/c","event_types":["order.created"],"filter":"data.amount > 100","retry_policy":{"max_attempts":3,"max_age_seconds":3600}}`)
		if a.code == 422 && strings.Contains(a.raw, "is not a known field") {
			t.Skip("the server does not take filter and retry_policy yet")
		}
		require.Equal(t, 201, a.code, a.raw)
		require.Equal(t, "data.amount > 100", a.body["filter"])
	})

	// Events: publish (idempotently), batch, list with a cursor, get.
	before := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	ev := c.must(202, "POST", "/v1/events", `{"type":"order.created","key":"order-1","data":{"id":1,"amount":10}}`, "Idempotency-Key", "order-1-created")
	evID := ev.body["id"].(string)
	require.Equal(t, "/v1/events/"+evID, ev.header.Get("Location"))
	require.Empty(t, ev.header.Get("Idempotent-Replayed"))
	again := c.must(202, "POST", "/v1/events", `{"type":"order.created","key":"order-1","data":{ "id":1, "amount":10 }}`, "Idempotency-Key", "order-1-created")
	require.Equal(t, evID, again.body["id"])
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	c.call("POST", "/v1/events", `{"type":"order.created","key":"order-1","data":{"id":2}}`, "Idempotency-Key", "order-1-created").
		problem(t, 422, "urn:ecs:problem:idempotency-key-reused")
	bad := c.call("POST", "/v1/events", `{"type":"order.created","data":{"id":1,"amount":-1}}`)
	bad.problem(t, 422, "urn:ecs:problem:validation")
	require.Equal(t, "/data/amount", bad.body["errors"].([]any)[0].(map[string]any)["field"])
	c.must(202, "POST", "/v1/events", `{"type":"order.shipped","data":{"id":1}}`)
	batch := c.must(200, "POST", "/v1/events:batch", `{"events":[
		{"type":"order.created","key":"order-2","data":{"id":2},"idempotency_key":"order-2-created"},
		{"type":"order.created","key":"order-2","data":{"id":2},"idempotency_key":"order-2-created"},
		{"type":"no.such.type","data":{}},
		{"type":"order.created","data":null}]}`)
	var statuses []float64
	for _, item := range batch.body["data"].([]any) {
		statuses = append(statuses, item.(map[string]any)["status"].(float64))
	}
	require.Equal(t, []float64{202, 202, 422, 422}, statuses, batch.raw)
	list := c.must(200, "GET", "/v1/events?limit=2", "")
	require.Len(t, list.body["data"], 2)
	list = c.must(200, "GET", "/v1/events?limit=2&cursor="+url.QueryEscape(list.body["next_cursor"].(string)), "")
	require.NotEmpty(t, list.body["data"])
	filtered := c.must(200, "GET", "/v1/events?type=order.created&key=order-1&since="+url.QueryEscape(before)+
		"&until="+url.QueryEscape(time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)), "")
	require.Len(t, filtered.body["data"], 1)
	c.call("GET", "/v1/events?since=yesterday", "").problem(t, 422, "urn:ecs:problem:validation")
	withStates := c.must(200, "GET", "/v1/events/"+evID, "")
	require.NotEmpty(t, withStates.body["deliveries"])
	c.call("GET", "/v1/events/01a21173-3496-795c-821c-6725ded937b2", "").problem(t, 404, "about:blank")

	// Deliveries: a replay creates them (no worker runs here); one is made dead
	// with a recorded attempt, then listed, read, retried and redriven.
	replayed := c.must(202, "POST", "/v1/subscriptions/"+subID+":replay", `{"since":"`+before+`"}`)
	require.Equal(t, float64(3), replayed.body["deliveries"], replayed.raw)
	c.call("POST", "/v1/subscriptions/"+subID+":replay", `{"until":"`+before+`"}`).problem(t, 422, "urn:ecs:problem:validation")
	c.call("POST", "/v1/subscriptions/"+subID+":frobnicate", `{}`).problem(t, 404, "about:blank")
	var deadID string
	require.NoError(t, pool.QueryRow(t.Context(), `UPDATE deliveries SET status = 'dead', attempts = 1, last_error = 'status 500'
		WHERE id = (SELECT id FROM deliveries WHERE event_id = $1) RETURNING id`, evID).Scan(&deadID))
	_, err := pool.Exec(t.Context(), `INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, succeeded)
		VALUES ($1, 1, now(), 1500, 500, 'status 500', 'oops', false)`, deadID)
	require.NoError(t, err)
	deliveries := c.must(200, "GET", "/v1/deliveries?limit=2&subscription_id="+subID, "")
	require.Len(t, deliveries.body["data"], 2)
	c.must(200, "GET", "/v1/deliveries?limit=2&cursor="+url.QueryEscape(deliveries.body["next_cursor"].(string)), "")
	dead := c.must(200, "GET", "/v1/deliveries?status=dead&event_id="+evID+"&since="+url.QueryEscape(before), "")
	require.Len(t, dead.body["data"], 1)
	require.Len(t, dead.body["data"].([]any)[0].(map[string]any)["attempt_log"], 1)
	c.must(200, "GET", "/v1/deliveries/"+deadID, "")
	c.call("GET", "/v1/deliveries?status=done", "").problem(t, 422, "urn:ecs:problem:validation")
	c.must(202, "POST", "/v1/deliveries/"+deadID+":retry", "")
	c.must(202, "POST", "/v1/deliveries:redrive", `{"subscription_id":"`+subID+`","since":"`+before+`"}`)
	c.call("POST", "/v1/deliveries/01a21173-3496-795c-821c-6725ded937b2:retry", "").problem(t, 404, "about:blank")
	c.call("GET", "/v1/dead-letters", "").problem(t, 503, "urn:ecs:problem:dead-letters-unavailable")

	// API keys and scopes.
	key := c.must(201, "POST", "/v1/api-keys", `{"name":"producer","scopes":["events:write"],"expires_at":"`+
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
	keyID := key.body["id"].(string)
	limited := c.with(key.body["key"].(string))
	limited.must(202, "POST", "/v1/events", `{"type":"order.shipped","data":{"id":2}}`)
	denied := limited.call("GET", "/v1/event-types", "")
	denied.problem(t, 403, "urn:ecs:problem:insufficient-scope")
	require.Contains(t, denied.header.Get("WWW-Authenticate"), `scope="config:read"`)
	c.must(200, "GET", "/v1/api-keys", "")
	c.must(204, "DELETE", "/v1/api-keys/"+keyID, "")
	c.call("DELETE", "/v1/api-keys/01a21173-3496-795c-821c-6725ded937b2", "").problem(t, 404, "about:blank")
	c.call("POST", "/v1/api-keys", `{"name":"x","scopes":["events:delete"]}`).problem(t, 422, "urn:ecs:problem:validation")

	// Audit log, paged and filtered.
	audit := c.must(200, "GET", "/v1/audit?limit=2", "")
	require.Len(t, audit.body["data"], 2)
	c.must(200, "GET", "/v1/audit?limit=2&cursor="+url.QueryEscape(audit.body["next_cursor"].(string)), "")
	c.must(200, "GET", "/v1/audit?actor=token&action=subscription.update&resource_type=subscription&resource_id="+subID+
		"&since="+url.QueryEscape(before), "")
	c.call("GET", "/v1/audit?cursor=***", "").problem(t, 422, "urn:ecs:problem:validation")

	// Deletion: a cancelled delivery cannot be retried; archived types refuse events.
	c.must(204, "DELETE", "/v1/subscriptions/"+subID, "")
	c.call("GET", "/v1/subscriptions/"+subID, "").problem(t, 404, "about:blank")
	c.call("POST", "/v1/deliveries/"+deadID+":retry", "").problem(t, 409, "urn:ecs:problem:not-retryable")
	archived := c.must(204, "DELETE", "/v1/event-types/order.shipped", "")
	require.NotEmpty(t, archived.header.Get("ETag"))
	c.call("POST", "/v1/events", `{"type":"order.shipped","data":{}}`).problem(t, 422, "urn:ecs:problem:event-type-archived")
	c.call("DELETE", "/v1/event-types/order.created", "", "If-Match", `"999"`).problem(t, 412, "urn:ecs:problem:precondition-failed")

	// Malformed requests.
	c.with("").call("GET", "/v1/event-types", "").problem(t, 401, "urn:ecs:problem:unauthorized")
	c.with("nope").call("GET", "/v1/event-types", "").problem(t, 401, "urn:ecs:problem:unauthorized")
	c.call("POST", "/v1/events", `{"type":"order.created","data":"`+strings.Repeat("x", 5000)+`"}`).problem(t, 413, "urn:ecs:problem:body-too-large")
	c.call("POST", "/v1/events", `{}`, "Content-Type", "text/plain").problem(t, 415, "urn:ecs:problem:unsupported-media-type")
	c.call("POST", "/v1/events", `{"type":`).problem(t, 400, "urn:ecs:problem:malformed-json")
	unknown := c.call("POST", "/v1/events", `{"type":"order.created","data":{},"tpye":1}`)
	unknown.problem(t, 422, "urn:ecs:problem:validation")
	require.Equal(t, "tpye", unknown.body["errors"].([]any)[0].(map[string]any)["field"])
	c.call("POST", "/v1/deliveries:redrive", `{"subscription_id":"nope"}`).problem(t, 400, "urn:ecs:problem:malformed-json")
	c.call("GET", "/v1/nothing", "").problem(t, 404, "about:blank")
	c.call("PUT", "/v1/events", `{}`).problem(t, 405, "about:blank")
}

// TestDeadLettersMatchSpec reads dead-letter records, written the way the
// worker writes them, through GET /v1/dead-letters.
func TestDeadLettersMatchSpec(t *testing.T) {
	t.Parallel()
	k, err := kafka.StartEmbedded("", logging.Discard())
	require.NoError(t, err)
	t.Cleanup(k.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...), kgo.AllowAutoTopicCreation())
	require.NoError(t, err)
	subID := "01a21173-3496-795c-821c-6725ded937b2"
	for i, sub := range []string{subID, "01a21173-0000-7000-8000-000000000001"} {
		rec := &kgo.Record{Topic: "ecs.dlq", Key: []byte("order-1"),
			Value: outbox.WebhookBody("order.created", time.Now(), []byte(`{"id":1,"tags":["a"]}`)),
			Headers: []kgo.RecordHeader{
				{Key: kafka.HeaderEventID, Value: []byte("01a21173-3496-795c-821c-6725ded937b3")},
				{Key: kafka.HeaderDLQSubscription, Value: []byte(sub)},
				{Key: kafka.HeaderDLQDelivery, Value: []byte("01a21173-3496-795c-821c-6725ded937b4")},
				{Key: kafka.HeaderDLQAttempts, Value: []byte(strconv.Itoa(8 + i))},
				{Key: kafka.HeaderDLQReason, Value: []byte("status 503")},
			}}
		require.NoError(t, cl.ProduceSync(t.Context(), rec).FirstErr())
	}
	cl.Close()

	e, _ := contractServer(t, api.Config{KafkaBrokers: k.Brokers()})
	srv := httptest.NewServer(validating(t, e))
	t.Cleanup(srv.Close)
	c := specClient{t: t, base: srv.URL, cred: contractToken}
	require.Len(t, c.must(200, "GET", "/v1/dead-letters", "").body["data"], 2)
	one := c.must(200, "GET", "/v1/dead-letters?limit=10&subscription_id="+subID, "")
	require.Len(t, one.body["data"], 1)
	require.Equal(t, float64(8), one.body["data"].([]any)[0].(map[string]any)["attempts"])
	c.call("GET", "/v1/dead-letters?subscription_id=nope", "").problem(t, 422, "urn:ecs:problem:validation")
}

// TestWebhookMatchesAsyncAPISpec ties docs/event-webhook-asyncapi.yaml to the
// code: the Kafka header names are the ones the relay and worker write, and a
// webhook the platform sends (through POST /v1/subscriptions/{id}/test) matches
// the document's header and body schemas and verifies.
func TestWebhookMatchesAsyncAPISpec(t *testing.T) {
	t.Parallel()
	var doc any
	require.NoError(t, yaml.Unmarshal(docs.AsyncAPI, &doc))
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	spec, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	require.NoError(t, comp.AddResource("asyncapi.json", spec))
	schema := func(name string) *jsonschema.Schema {
		s, err := comp.Compile("asyncapi.json#/components/schemas/" + name)
		require.NoError(t, err, name)
		return s
	}
	properties := func(name string) []string {
		props := spec.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)["properties"].(map[string]any)
		return slices.Sorted(maps.Keys(props))
	}
	require.ElementsMatch(t, []string{kafka.HeaderEventID, kafka.HeaderEventType, kafka.HeaderKeySeq}, properties("EventRecordHeaders"))
	require.ElementsMatch(t, []string{"ecs-event-id", kafka.HeaderDLQSubscription, kafka.HeaderDLQDelivery, kafka.HeaderDLQAttempts,
		kafka.HeaderDLQReason}, properties("DeadLetterHeaders"))
	require.Subset(t, properties("WebhookHeaders"), []string{signature.HeaderID, signature.HeaderTimestamp, signature.HeaderSignature})

	type received struct {
		header http.Header
		body   []byte
	}
	got := make(chan received, 1)
	subscriber := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- received{r.Header.Clone(), body}
	}))
	t.Cleanup(subscriber.Close)
	e, _ := contractServer(t, api.Config{AllowHTTPURLs: true, Egress: loopbackOK})
	srv := httptest.NewServer(validating(t, e))
	t.Cleanup(srv.Close)
	c := specClient{t: t, base: srv.URL, cred: contractToken}
	c.must(201, "POST", "/v1/event-types", `{"name":"order.created"}`)
	sub := c.must(201, "POST", "/v1/subscriptions", `{"url":"`+subscriber.URL+`","event_types":["order.created"],"signature_schemes":["v1","v1a"]}`)
	oldSecret := sub.body["secret"].(string)
	newSecret := c.must(200, "POST", "/v1/subscriptions/"+sub.body["id"].(string)+"/secret:rotate", "").body["secret"].(string)
	c.must(200, "POST", "/v1/subscriptions/"+sub.body["id"].(string)+"/test", `{"type":"order.created","data":{"id":1}}`)
	hook := <-got

	headers := map[string]any{}
	for _, name := range properties("WebhookHeaders") {
		if v := hook.header.Get(name); v != "" {
			headers[name] = v
		}
	}
	require.NoError(t, schema("WebhookHeaders").Validate(headers))
	body, err := jsonschema.UnmarshalJSON(bytes.NewReader(hook.body))
	require.NoError(t, err)
	require.NoError(t, schema("WebhookBody").Validate(body))
	sigs := strings.Fields(hook.header.Get(signature.HeaderSignature))
	require.Len(t, sigs, 4, "v1 and v1a, each with the new and the previous key during a rotation")
	for _, secret := range []string{newSecret, oldSecret} {
		require.NoError(t, signature.Verify(secret, hook.header.Get(signature.HeaderID), hook.header.Get(signature.HeaderTimestamp),
			hook.header.Get(signature.HeaderSignature), hook.body, time.Now(), time.Minute))
	}
	keys := c.must(200, "GET", "/v1/subscriptions/"+sub.body["id"].(string)+"/public-key", "")
	for _, pub := range []any{keys.body["public_key"], keys.body["previous"].(map[string]any)["public_key"]} {
		require.NoError(t, signature.VerifyV1a(pub.(string), hook.header.Get(signature.HeaderID), hook.header.Get(signature.HeaderTimestamp),
			hook.header.Get(signature.HeaderSignature), hook.body, time.Now(), time.Minute))
	}
}
