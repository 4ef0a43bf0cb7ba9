package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

type createEventTypeRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Schema      json.RawMessage   `json:"schema"`
	Examples    []json.RawMessage `json:"examples"`
	Enabled     *bool             `json:"enabled"`
}

// schemaOrNil treats an absent or null schema as none.
func schemaOrNil(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

func (a *API) createEventType(c *gin.Context) {
	var req createEventTypeRequest
	if !a.decode(c, &req) {
		return
	}
	if !outbox.ValidEventTypeName(req.Name) {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid event type name", ecshttp.FieldError{Field: "name",
			Message: "must be lowercase words of letters, digits and _ joined by dots, e.g. order.created (at most 128 characters)"}))
		return
	}
	if strings.HasPrefix(req.Name, delivery.PlatformTypePrefix) {
		ecshttp.WriteProblem(c, ecshttp.Validation("reserved event type name", ecshttp.FieldError{Field: "name",
			Message: "names under " + delivery.PlatformTypePrefix + " are reserved for the platform's own events"}))
		return
	}
	spec := outbox.EventTypeSpec{Description: req.Description, Schema: schemaOrNil(req.Schema), Examples: req.Examples, Enabled: req.Enabled == nil || *req.Enabled}
	if !a.checkSpec(c, spec) {
		return
	}
	var et outbox.EventType
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		et, err = a.outbox.Tx(tx).CreateEventType(c, req.Name, spec)
		return audit{action: "event_type.create", resourceType: "event_type", resourceID: req.Name, after: et}, err
	})
	if errors.Is(err, outbox.ErrEventTypeExists) {
		ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusConflict, "event-type-exists", "event type "+req.Name+" already exists"))
		return
	}
	if err != nil {
		a.internal(c, err)
		return
	}
	c.Header("Location", "/v1/event-types/"+et.Name)
	writeEventType(c, http.StatusCreated, et)
}

// checkSpec answers a 422 naming the field when spec is invalid.
func (a *API) checkSpec(c *gin.Context, spec outbox.EventTypeSpec) bool {
	err := outbox.CheckSpec(spec)
	if err == nil {
		return true
	}
	var se *outbox.SchemaError
	if errors.As(err, &se) {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid event type", violations(se)...))
		return false
	}
	a.internal(c, err)
	return false
}

func violations(se *outbox.SchemaError) []ecshttp.FieldError {
	out := make([]ecshttp.FieldError, len(se.Violations))
	for i, v := range se.Violations {
		out[i] = ecshttp.FieldError{Field: v.Field, Message: v.Message}
	}
	return out
}

func writeEventType(c *gin.Context, status int, et outbox.EventType) {
	c.Header("ETag", etag(et.Version))
	c.JSON(status, et)
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

// ifMatch reads If-Match: nil when absent or "*", else the version it names. A
// value that names no version can match nothing: -1.
func ifMatch(c *gin.Context) *int {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" || h == "*" {
		return nil
	}
	v, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(h, "W/"), `"`))
	if err != nil {
		v = -1
	}
	return &v
}

type page[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// pageOf is one page of a list: items (never null in JSON) and, when more
// follow, the cursor of its last item. Unpaged lists are pageOf(items, false, nil).
func pageOf[T any](items []T, more bool, cursor func(T) string) page[T] {
	p := page[T]{Data: items}
	if p.Data == nil {
		p.Data = []T{}
	}
	if more && len(items) > 0 {
		p.NextCursor = cursor(items[len(items)-1])
	}
	return p
}

func (a *API) listEventTypes(c *gin.Context) {
	qp := &query{c: c}
	after, limit := qp.nameCursor(), qp.limit()
	archived := c.Query("include_archived")
	if archived != "" && archived != "true" && archived != "false" {
		qp.bad("include_archived", "must be true or false")
	}
	if !qp.ok() {
		return
	}
	ets, more, err := a.outbox.ListEventTypes(c, after, limit, archived == "true")
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, pageOf(ets, more, func(et outbox.EventType) string { return nameCursor(et.Name) }))
}

func (a *API) getEventType(c *gin.Context) {
	et, err := a.outbox.GetEventType(c, c.Param("name"))
	if err != nil {
		a.fail(c, err, "event type "+strconv.Quote(c.Param("name")))
		return
	}
	writeEventType(c, http.StatusOK, et)
}

// patchEventType applies a JSON merge patch (RFC 7396) of description,
// schema (null removes it), examples, enabled and archived.
func (a *API) patchEventType(c *gin.Context) {
	var patch struct {
		Description *string           `json:"description"`
		Schema      json.RawMessage   `json:"schema"`
		Examples    []json.RawMessage `json:"examples"`
		Enabled     *bool             `json:"enabled"`
		Archived    *bool             `json:"archived"`
	}
	if !a.decode(c, &patch) {
		return
	}
	name := c.Param("name")
	cur, err := a.outbox.GetEventType(c, name)
	if err != nil {
		a.fail(c, err, "event type "+strconv.Quote(name))
		return
	}
	want := ifMatch(c)
	if want != nil && *want != cur.Version {
		a.preconditionFailed(c, cur.Version)
		return
	}
	spec := outbox.EventTypeSpec{Description: cur.Description, Schema: cur.Schema, Examples: cur.Examples, Enabled: cur.Enabled, Archived: cur.Archived}
	if patch.Description != nil {
		spec.Description = *patch.Description
	}
	if patch.Schema != nil {
		spec.Schema = schemaOrNil(patch.Schema)
	}
	if patch.Examples != nil {
		spec.Examples = patch.Examples
	}
	if patch.Enabled != nil {
		spec.Enabled = *patch.Enabled
	}
	if patch.Archived != nil {
		spec.Archived = *patch.Archived
	}
	if !a.checkSpec(c, spec) {
		return
	}
	// Update only the version read above, so a concurrent change is not lost.
	a.updateEventType(c, cur, spec, "event_type.update", http.StatusOK)
}

// archiveEventType (DELETE) archives: new events are refused, history stays.
func (a *API) archiveEventType(c *gin.Context) {
	name := c.Param("name")
	cur, err := a.outbox.GetEventType(c, name)
	if err != nil {
		a.fail(c, err, "event type "+strconv.Quote(name))
		return
	}
	if want := ifMatch(c); want != nil && *want != cur.Version {
		a.preconditionFailed(c, cur.Version)
		return
	}
	spec := outbox.EventTypeSpec{Description: cur.Description, Schema: cur.Schema, Examples: cur.Examples, Enabled: cur.Enabled, Archived: true}
	a.updateEventType(c, cur, spec, "event_type.archive", http.StatusNoContent)
}

// updateEventType writes spec over cur, only if cur is still the current version.
func (a *API) updateEventType(c *gin.Context, cur outbox.EventType, spec outbox.EventTypeSpec, action string, status int) {
	name := cur.Name
	var et outbox.EventType
	err := a.change(c, func(tx pgx.Tx) (audit, error) {
		var err error
		et, err = a.outbox.Tx(tx).UpdateEventType(c, name, spec, &cur.Version)
		return audit{action: action, resourceType: "event_type", resourceID: name, before: cur, after: et}, err
	})
	if errors.Is(err, outbox.ErrVersionMismatch) {
		a.preconditionFailed(c, -1)
		return
	}
	if err != nil {
		a.fail(c, err, "event type "+strconv.Quote(name))
		return
	}
	if status == http.StatusNoContent {
		c.Header("ETag", etag(et.Version))
		c.Status(status)
		return
	}
	writeEventType(c, status, et)
}

func (a *API) preconditionFailed(c *gin.Context, current int) {
	detail := "the resource changed since you read it; GET it again and retry"
	if current >= 0 {
		c.Header("ETag", etag(current))
		detail = "If-Match does not match the current ETag " + etag(current)
	}
	ecshttp.WriteProblem(c, ecshttp.NewProblem(http.StatusPreconditionFailed, "precondition-failed", detail))
}
