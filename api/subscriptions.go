package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/net/http/httpguts"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/delivery/egress"
	"github.com/eventconfigservice/ecs/delivery/filter"
	"github.com/eventconfigservice/ecs/delivery/signature"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// subscriptionFields are the settable fields, shared by create and PATCH.
type subscriptionFields struct {
	URL            *string           `json:"url"`
	EventTypes     []string          `json:"event_types"`
	Description    *string           `json:"description"`
	State          *string           `json:"state"`
	DisabledReason *string           `json:"disabled_reason"`
	Metadata       map[string]string `json:"metadata"`
	Headers        map[string]string `json:"headers"`
	// TimeoutMS 0 means the worker's default.
	TimeoutMS *int `json:"timeout_ms"`
	// Filter, RetryPolicy, MaxConcurrency and RateLimit: absent keeps, null
	// clears.
	Filter           json.RawMessage `json:"filter"`
	RetryPolicy      json.RawMessage `json:"retry_policy"`
	MaxConcurrency   json.RawMessage `json:"max_concurrency"`
	RateLimit        json.RawMessage `json:"rate_limit"`
	Ordering         *string         `json:"ordering"`
	SignatureSchemes []string        `json:"signature_schemes"`
}

type createSubscriptionRequest struct {
	subscriptionFields
	Secret string `json:"secret"`
}

// reservedHeaders are set by the platform or by HTTP itself; a subscription
// cannot set them.
var reservedHeaders = []string{"content-type", "content-length", "host", "connection", "keep-alive", "te", "trailer",
	"transfer-encoding", "upgrade", "user-agent"}

// apply validates f and writes it over sub, returning a field error per bad field.
func (a *API) apply(c *gin.Context, f subscriptionFields, sub *delivery.Subscription) ([]ecshttp.FieldError, error) {
	var fields []ecshttp.FieldError
	bad := func(field, msg string) { fields = append(fields, ecshttp.FieldError{Field: field, Message: msg}) }
	if f.URL != nil {
		u, err := url.Parse(*f.URL)
		switch {
		case err != nil || u.Host == "" || u.User != nil || len(*f.URL) > 2048 || (u.Scheme != "https" && u.Scheme != "http"):
			bad("url", "must be an absolute https URL without credentials (at most 2048 characters)")
		case u.Scheme == "http" && !a.cfg.AllowHTTPURLs:
			bad("url", "must use https (plain http is allowed only in dev mode)")
		default:
			// The worker checks every connection again, so a name that
			// resolves elsewhere later (DNS rebinding) gains nothing.
			var blocked *egress.BlockedError
			if err := a.egress.CheckURL(c, *f.URL); errors.As(err, &blocked) {
				where := blocked.Addr.String()
				if blocked.Host != "" {
					where = blocked.Host + " resolves to " + where
				}
				bad("url", "must not point to a private, loopback, link-local or reserved address ("+where+")")
			} else if err != nil {
				bad("url", "must be an absolute https URL without credentials (at most 2048 characters)")
			} else {
				sub.URL = *f.URL
			}
		}
	}
	if f.EventTypes != nil {
		types, errs, err := a.checkPatterns(c, f.EventTypes)
		if err != nil {
			return nil, err
		}
		fields = append(fields, errs...)
		sub.EventTypes = types
	}
	if f.Description != nil {
		if len(*f.Description) > 1000 {
			bad("description", "must be at most 1000 characters")
		}
		sub.Description = *f.Description
	}
	if f.State != nil {
		switch *f.State {
		case delivery.StateActive, delivery.StatePaused:
			sub.State, sub.DisabledReason = *f.State, nil
		case delivery.StateDisabled:
			reason := "disabled through the API"
			if f.DisabledReason != nil && *f.DisabledReason != "" {
				reason = *f.DisabledReason
			}
			sub.State, sub.DisabledReason = *f.State, &reason
		default:
			bad("state", "must be active, paused or disabled")
		}
	}
	if sub.DisabledReason != nil && len(*sub.DisabledReason) > 500 {
		bad("disabled_reason", "must be at most 500 characters")
	}
	if f.Metadata != nil {
		if len(f.Metadata) > 50 {
			bad("metadata", "must hold at most 50 entries")
		}
		for k, v := range f.Metadata {
			if k == "" || len(k) > 64 || len(v) > 512 {
				bad("metadata."+k, "keys must be 1 to 64 characters, values at most 512")
			}
		}
		sub.Metadata = f.Metadata
	}
	if f.Headers != nil {
		if len(f.Headers) > 20 {
			bad("headers", "must hold at most 20 headers")
		}
		for k, v := range f.Headers {
			lk := strings.ToLower(k)
			switch {
			case !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) || len(v) > 4096:
				bad("headers."+k, "must be a valid HTTP header name and value")
			case strings.HasPrefix(lk, "webhook-") || strings.HasPrefix(lk, "proxy-") || slices.Contains(reservedHeaders, lk):
				bad("headers."+k, "is set by the platform and cannot be overridden")
			}
		}
		sub.Headers = f.Headers
	}
	if f.Filter != nil {
		var expr *string
		if err := json.Unmarshal(f.Filter, &expr); err != nil {
			bad("filter", "must be a string (a CEL expression) or null")
		} else if expr != nil {
			if _, err := filter.Compile(*expr); err != nil {
				bad("filter", err.Error())
			}
		}
		sub.Filter = expr
	}
	if f.RetryPolicy != nil {
		var p *delivery.RetryPolicy
		dec := json.NewDecoder(bytes.NewReader(f.RetryPolicy))
		dec.DisallowUnknownFields()
		switch err := dec.Decode(&p); {
		case err != nil:
			bad("retry_policy", "must be {max_attempts?, max_age_seconds?, schedule_seconds?} or null")
		case p != nil && p.MaxAttempts != nil && (*p.MaxAttempts < 1 || *p.MaxAttempts > 50):
			bad("retry_policy.max_attempts", "must be from 1 to 50")
		case p != nil && p.MaxAgeSeconds != nil && (*p.MaxAgeSeconds < 60 || *p.MaxAgeSeconds > 30*24*3600):
			bad("retry_policy.max_age_seconds", "must be from 60 to 2592000 (30 days)")
		case p != nil && p.ScheduleSeconds != nil && (len(p.ScheduleSeconds) < 1 || len(p.ScheduleSeconds) > 50 ||
			slices.ContainsFunc(p.ScheduleSeconds, func(s int) bool { return s < 1 || s > 7*24*3600 })):
			bad("retry_policy.schedule_seconds", "must list 1 to 50 waits, each from 1 to 604800 seconds (7 days)")
		case p != nil && p.MaxAttempts == nil && p.MaxAgeSeconds == nil && p.ScheduleSeconds == nil:
			sub.RetryPolicy = nil
		default:
			sub.RetryPolicy = p
		}
	}
	if f.MaxConcurrency != nil {
		n, ok := nullableInt(f.MaxConcurrency, 1, 1000)
		if !ok {
			bad("max_concurrency", "must be from 1 to 1000, or null for the worker's default")
		}
		sub.MaxConcurrency = n
	}
	if f.RateLimit != nil {
		n, ok := nullableInt(f.RateLimit, 1, 100000)
		if !ok {
			bad("rate_limit", "must be from 1 to 100000 requests per second, or null for none")
		}
		sub.RateLimit = n
	}
	if f.Ordering != nil {
		switch *f.Ordering {
		case delivery.Unordered, delivery.Ordered:
			sub.Ordering = *f.Ordering
		default:
			bad("ordering", "must be unordered or ordered")
		}
	}
	if f.SignatureSchemes != nil {
		schemes := slices.Clone(f.SignatureSchemes)
		slices.Sort(schemes)
		schemes = slices.Compact(schemes)
		if len(schemes) == 0 || slices.ContainsFunc(schemes, func(s string) bool { return s != signature.SchemeV1 && s != signature.SchemeV1a }) {
			bad("signature_schemes", `must list "v1" (HMAC-SHA256), "v1a" (ed25519) or both`)
		}
		sub.SignatureSchemes = schemes
	}
	if f.TimeoutMS != nil {
		switch t := *f.TimeoutMS; {
		case t == 0:
			sub.TimeoutMS = nil
		case t < 1000 || t > 60000:
			bad("timeout_ms", "must be from 1000 to 60000 (or 0 for the default)")
		default:
			sub.TimeoutMS = &t
		}
	}
	return fields, nil
}

// nullableInt reads JSON null (nil) or a whole number in [lo, hi].
func nullableInt(raw json.RawMessage, lo, hi int) (*int, bool) {
	var n *int
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, false
	}
	if n != nil && (*n < lo || *n > hi) {
		return nil, false
	}
	return n, true
}

// checkPatterns validates event type patterns: exact names of existing,
// unarchived types; "prefix.*" for every type under prefix; "*" for all.
func (a *API) checkPatterns(c *gin.Context, patterns []string) ([]string, []ecshttp.FieldError, error) {
	var fields []ecshttp.FieldError
	if len(patterns) == 0 || len(patterns) > 100 {
		return nil, []ecshttp.FieldError{{Field: "event_types", Message: "must list 1 to 100 event types"}}, nil
	}
	var exact []string
	for _, p := range patterns {
		if !strings.HasSuffix(p, "*") {
			exact = append(exact, p)
		}
	}
	known, err := a.outbox.EventTypesNamed(c, exact)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	seen := map[string]bool{}
	for i, p := range patterns {
		field := "event_types[" + strconv.Itoa(i) + "]"
		switch prefix, wild := strings.CutSuffix(p, ".*"); {
		case p == "*":
		case wild && outbox.ValidEventTypeName(prefix):
		case strings.Contains(p, "*"):
			fields = append(fields, ecshttp.FieldError{Field: field, Message: `wildcards are "*" or a name followed by ".*", e.g. order.*`})
			continue
		default:
			et, ok := known[p]
			if !ok {
				fields = append(fields, ecshttp.FieldError{Field: field, Message: "unknown event type " + strconv.Quote(p)})
				continue
			}
			if et.Archived {
				fields = append(fields, ecshttp.FieldError{Field: field, Message: "event type " + strconv.Quote(p) + " is archived"})
				continue
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, fields, nil
}

func writeSubscription(c *gin.Context, status int, sub delivery.Subscription) {
	c.Header("ETag", etag(sub.Version))
	c.JSON(status, sub)
}

func (a *API) createSubscription(c *gin.Context) {
	var req createSubscriptionRequest
	if !a.decode(c, &req) {
		return
	}
	sub := delivery.Subscription{State: delivery.StateActive}
	var fields []ecshttp.FieldError
	if req.URL == nil {
		fields = append(fields, ecshttp.FieldError{Field: "url", Message: "is required"})
	}
	if req.EventTypes == nil {
		fields = append(fields, ecshttp.FieldError{Field: "event_types", Message: "must list 1 to 100 event types"})
	}
	more, err := a.apply(c, req.subscriptionFields, &sub)
	if err != nil {
		a.internal(c, err)
		return
	}
	fields = append(fields, more...)
	if req.Secret != "" {
		if _, err := signature.Key(req.Secret); err != nil {
			fields = append(fields, ecshttp.FieldError{Field: "secret", Message: err.Error()})
		}
	}
	if len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid subscription", fields...))
		return
	}
	sub.Secret = req.Secret
	if sub.Secret == "" {
		if sub.Secret, err = signature.NewSecret(); err != nil {
			a.internal(c, err)
			return
		}
	}
	sub.ID = uuid.Must(uuid.NewV7())
	var out delivery.Subscription
	err = a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		out, err = a.deliveries.Tx(tx).CreateSubscription(c, sub)
		shown := out
		shown.Secret = "" // never audited
		return audit{action: "subscription.create", resourceType: "subscription", resourceID: sub.ID.String(), after: shown}, err
	})
	if err != nil {
		a.internal(c, err)
		return
	}
	c.Header("Location", "/v1/subscriptions/"+out.ID.String())
	writeSubscription(c, http.StatusCreated, out) // the only answer that carries the secret (besides a rotation)
}

func (a *API) listSubscriptions(c *gin.Context) {
	qp := &query{c: c}
	after, limit, state := qp.cursor(), qp.limit(), qp.str("state")
	if state != nil && *state != delivery.StateActive && *state != delivery.StatePaused && *state != delivery.StateDisabled {
		qp.bad("state", "must be active, paused or disabled")
	}
	if !qp.ok() {
		return
	}
	subs, more, err := a.deliveries.ListSubscriptions(c, after, state, limit)
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, pageOf(subs, more, func(s delivery.Subscription) string { return idCursor(s.ID) }))
}

func (a *API) getSubscription(c *gin.Context) {
	if sub, ok := a.pathSubscription(c); ok {
		writeSubscription(c, http.StatusOK, sub)
	}
}

// pathSubscription reads the subscription the path names, or answers 404 (or
// 422 for a malformed id) and false.
func (a *API) pathSubscription(c *gin.Context) (delivery.Subscription, bool) {
	id, ok := pathID(c)
	if !ok {
		return delivery.Subscription{}, false
	}
	sub, err := a.deliveries.GetSubscription(c, id)
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return delivery.Subscription{}, false
	}
	return sub, true
}

// patchSubscription applies a merge patch of the settable fields. Pausing holds
// deliveries back (they accumulate); resuming sends them; disabling stops
// creating deliveries.
func (a *API) patchSubscription(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	var f subscriptionFields
	if !a.decode(c, &f) {
		return
	}
	cur, err := a.deliveries.GetSubscription(c, id)
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	if want := ifMatch(c); want != nil && *want != cur.Version {
		a.preconditionFailed(c, cur.Version)
		return
	}
	next := cur
	fields, err := a.apply(c, f, &next)
	if err != nil {
		a.internal(c, err)
		return
	}
	if len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid subscription", fields...))
		return
	}
	var out delivery.Subscription
	err = a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		out, err = a.deliveries.Tx(tx).UpdateSubscription(c, next, cur.Version)
		return audit{action: "subscription.update", resourceType: "subscription", resourceID: id.String(), before: cur, after: out}, err
	})
	if errors.Is(err, delivery.ErrVersionMismatch) {
		a.preconditionFailed(c, -1)
		return
	}
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	writeSubscription(c, http.StatusOK, out)
}

// rotateSecret issues a new secret (or takes the given one). For the overlap
// (default ECS_API_SECRET_ROTATION_OVERLAP) both old and new signatures are
// sent, so subscribers can switch without losing a webhook.
func (a *API) rotateSecret(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	var req struct {
		Secret         string `json:"secret"`
		OverlapSeconds *int   `json:"overlap_seconds"`
	}
	if c.Request.ContentLength != 0 && !a.decode(c, &req) {
		return
	}
	overlap := a.cfg.SecretOverlap
	if req.OverlapSeconds != nil {
		if *req.OverlapSeconds < 0 || *req.OverlapSeconds > 7*24*3600 {
			ecshttp.WriteProblem(c, ecshttp.Validation("invalid rotation", ecshttp.FieldError{Field: "overlap_seconds", Message: "must be from 0 to 604800 (7 days)"}))
			return
		}
		overlap = time.Duration(*req.OverlapSeconds) * time.Second
	}
	secret := req.Secret
	if secret != "" {
		if _, err := signature.Key(secret); err != nil {
			ecshttp.WriteProblem(c, ecshttp.Validation("invalid rotation", ecshttp.FieldError{Field: "secret", Message: err.Error()}))
			return
		}
	} else {
		var err error
		if secret, err = signature.NewSecret(); err != nil {
			a.internal(c, err)
			return
		}
	}
	var out delivery.Subscription
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		out, err = a.deliveries.Tx(tx).RotateSecret(c, id, secret, time.Now().Add(overlap))
		shown := out
		shown.Secret = "" // never audited
		return audit{action: "subscription.rotate_secret", resourceType: "subscription", resourceID: id.String(), after: shown}, err
	})
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	writeSubscription(c, http.StatusOK, out)
}

func (a *API) deleteSubscription(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	if want := ifMatch(c); want != nil {
		cur, err := a.deliveries.GetSubscription(c, id)
		if err != nil {
			a.fail(c, err, "subscription "+id.String())
			return
		}
		if *want != cur.Version {
			a.preconditionFailed(c, cur.Version)
			return
		}
	}
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		store := a.deliveries.Tx(tx)
		before, err := store.GetSubscription(c, id) // carries no secret
		if err != nil {
			return audit{}, err
		}
		return audit{action: "subscription.delete", resourceType: "subscription", resourceID: id.String(), before: before},
			store.DeleteSubscription(c, id)
	})
	if err != nil {
		a.fail(c, err, "subscription "+id.String())
		return
	}
	c.Status(http.StatusNoContent)
}
