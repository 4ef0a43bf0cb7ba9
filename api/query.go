package api

import (
	"encoding/base64"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// query reads query parameters, collecting a field error per bad one.
type query struct {
	c      *gin.Context
	fields []ecshttp.FieldError
}

func (q *query) bad(name, msg string) {
	q.fields = append(q.fields, ecshttp.FieldError{Field: name, Message: msg})
}

func (q *query) uuid(name string) *uuid.UUID {
	v := q.c.Query(name)
	if v == "" {
		return nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		q.bad(name, "must be a UUID")
		return nil
	}
	return &id
}

func (q *query) str(name string) *string {
	if v := q.c.Query(name); v != "" {
		return &v
	}
	return nil
}

// time reads an RFC 3339 timestamp ("2026-11-25T07:00:00Z").
func (q *query) time(name string) *time.Time {
	v := q.c.Query(name)
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		q.bad(name, "must be an RFC 3339 timestamp, e.g. 2026-11-25T07:00:00Z")
		return nil
	}
	return &t
}

// limit reads limit (1 to 1000, default 100).
func (q *query) limit() int {
	v := q.c.Query("limit")
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		q.bad("limit", "must be a whole number from 1 to 1000")
		return 100
	}
	return n
}

// cursor reads a cursor this API returned for an id-ordered list.
func (q *query) cursor() *uuid.UUID {
	v := q.c.Query("cursor")
	if v == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err == nil {
		if id, err := uuid.FromBytes(b); err == nil {
			return &id
		}
	}
	q.bad("cursor", "is not a cursor this API returned")
	return nil
}

// ok answers a 422 naming every bad parameter, if any.
func (q *query) ok() bool {
	if len(q.fields) == 0 {
		return true
	}
	ecshttp.WriteProblem(q.c, ecshttp.Validation("invalid query parameters", q.fields...))
	return false
}

func idCursor(id uuid.UUID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// seqCursor reads a cursor this API returned for a sequence-ordered list.
func (q *query) seqCursor() *int64 {
	v := q.c.Query("cursor")
	if v == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err == nil {
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			return &n
		}
	}
	q.bad("cursor", "is not a cursor this API returned")
	return nil
}

func seqCursor(n int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(n, 10)))
}

// nameCursor reads a cursor this API returned for a name-ordered list.
func (q *query) nameCursor() string {
	v := q.c.Query("cursor")
	if v == "" {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) == 0 {
		q.bad("cursor", "is not a cursor this API returned")
		return ""
	}
	return string(b)
}

func nameCursor(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }
