package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/eventconfigservice/ecs/delivery"
	"github.com/eventconfigservice/ecs/outbox"
	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

type publishEventRequest struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Key  string          `json:"key"`
}

// check validates the request's own fields; prefix names where it sits
// ("" for a single event, "events[3]." in a batch).
func (r publishEventRequest) check(prefix, idem, idemField string) []ecshttp.FieldError {
	var fields []ecshttp.FieldError
	switch {
	case r.Type == "":
		fields = append(fields, ecshttp.FieldError{Field: prefix + "type", Message: "is required"})
	case strings.HasPrefix(r.Type, delivery.PlatformTypePrefix):
		fields = append(fields, ecshttp.FieldError{Field: prefix + "type", Message: "types under " + delivery.PlatformTypePrefix + " are the platform's own events"})
	}
	if len(r.Data) == 0 || string(r.Data) == "null" {
		fields = append(fields, ecshttp.FieldError{Field: prefix + "data", Message: "is required and must not be null"})
	}
	if len(r.Key) > outbox.MaxKey {
		fields = append(fields, ecshttp.FieldError{Field: prefix + "key", Message: "must be at most 1024 bytes"})
	}
	if len(idem) > outbox.MaxIdempotencyKey || strings.ContainsFunc(idem, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		fields = append(fields, ecshttp.FieldError{Field: idemField, Message: "must be at most 255 printable characters"})
	}
	return fields
}

// publishProblem maps a refused event to its problem; nil means err is not a
// refusal but a failure (a 500).
func publishProblem(err error, typ, idemField string) *ecshttp.Problem {
	var se *outbox.SchemaError
	switch {
	case errors.As(err, &se):
		return ecshttp.Validation("data does not match the schema of "+typ, violations(se)...)
	case errors.Is(err, outbox.ErrEventTypeArchived):
		return ecshttp.NewProblem(http.StatusUnprocessableEntity, "event-type-archived", "event type "+typ+" is archived and takes no new events")
	case errors.Is(err, outbox.ErrEventTypeDisabled):
		return ecshttp.NewProblem(http.StatusUnprocessableEntity, "event-type-disabled", "event type "+typ+" is disabled and takes no new events")
	case errors.Is(err, outbox.ErrUnknownEventType):
		return ecshttp.Validation("unknown event type",
			ecshttp.FieldError{Field: "type", Message: "no event type " + strconv.Quote(typ) + "; create it with POST /v1/event-types"})
	case errors.Is(err, outbox.ErrIdempotencyReused):
		return ecshttp.NewProblem(http.StatusUnprocessableEntity, "idempotency-key-reused",
			"this "+idemField+" was already used with a different request")
	}
	return nil
}

func (a *API) publishEvent(c *gin.Context) {
	var req publishEventRequest
	if !a.decode(c, &req) {
		return
	}
	idem := c.GetHeader(IdempotencyKeyHeader)
	if fields := req.check("", idem, IdempotencyKeyHeader); len(fields) > 0 {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid event", fields...))
		return
	}
	ev, replayed, err := a.outbox.Publish(c, outbox.NewEvent{Type: req.Type, Key: req.Key, Data: req.Data, IdempotencyKey: idem})
	if err != nil {
		if p := publishProblem(err, req.Type, IdempotencyKeyHeader); p != nil {
			ecshttp.WriteProblem(c, p)
			return
		}
		a.internal(c, err)
		return
	}
	if replayed {
		c.Header(ReplayedHeader, "true")
	}
	c.Header("Location", "/v1/events/"+ev.ID.String())
	c.JSON(http.StatusAccepted, ev)
}

type batchItem struct {
	publishEventRequest
	IdempotencyKey string `json:"idempotency_key"`
}

type batchRequest struct {
	Events []batchItem `json:"events"`
}

// batchResult answers one item: status 202 with the event (replayed when an
// idempotency key returned an earlier one), or a 4xx status with a problem.
type batchResult struct {
	Status   int              `json:"status"`
	Event    *outbox.Event    `json:"event,omitempty"`
	Replayed bool             `json:"replayed,omitempty"`
	Error    *ecshttp.Problem `json:"error,omitempty"`
}

// publishBatch accepts up to 1,000 events; the acceptable ones commit in one
// transaction, and each item is answered on its own.
func (a *API) publishBatch(c *gin.Context) {
	var req batchRequest
	if !a.decodeLimit(c, &req, a.cfg.MaxBatchBytes) {
		return
	}
	if len(req.Events) == 0 || len(req.Events) > outbox.MaxBatch {
		ecshttp.WriteProblem(c, ecshttp.Validation("invalid batch", ecshttp.FieldError{Field: "events", Message: "must hold 1 to 1000 events"}))
		return
	}
	out := make([]batchResult, len(req.Events))
	var evs []outbox.NewEvent
	var pos []int
	for i, item := range req.Events {
		prefix := "events[" + strconv.Itoa(i) + "]."
		if fields := item.check(prefix, item.IdempotencyKey, prefix+"idempotency_key"); len(fields) > 0 {
			p := ecshttp.Validation("invalid event", fields...)
			out[i] = batchResult{Status: p.Status, Error: p}
			continue
		}
		evs = append(evs, outbox.NewEvent{Type: item.Type, Key: item.Key, Data: item.Data, IdempotencyKey: item.IdempotencyKey})
		pos = append(pos, i)
	}
	res, err := a.outbox.PublishBatch(c, evs)
	if err != nil {
		a.internal(c, err)
		return
	}
	for j, r := range res {
		i := pos[j]
		if r.Err != nil {
			p := publishProblem(r.Err, evs[j].Type, "idempotency_key")
			if p == nil {
				a.internal(c, r.Err)
				return
			}
			out[i] = batchResult{Status: p.Status, Error: p}
			continue
		}
		ev := r.Event
		out[i] = batchResult{Status: http.StatusAccepted, Event: &ev, Replayed: r.Replayed}
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

// listEvents lists events newest first, filtered by type, key and time.
func (a *API) listEvents(c *gin.Context) {
	q := &query{c: c}
	f := outbox.EventFilter{Type: q.str("type"), Key: q.str("key"), Since: q.time("since"), Until: q.time("until"),
		Before: q.cursor(), Limit: q.limit()}
	if !q.ok() {
		return
	}
	evs, more, err := a.outbox.ListEvents(c, f)
	if err != nil {
		a.internal(c, err)
		return
	}
	c.JSON(http.StatusOK, pageOf(evs, more, func(e outbox.Event) string { return idCursor(e.ID) }))
}
