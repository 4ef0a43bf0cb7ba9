// Package http holds the HTTP plumbing every role shares: a gin engine with request
// ids, access logs and panic recovery, RFC 9457 problem documents, the operational
// endpoints (/healthz, /readyz, /metrics), and a server with Start/Stop.
package http

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// ProblemContentType is the media type of RFC 9457 problem documents.
const ProblemContentType = "application/problem+json"

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document. Type is a URN naming the kind of
// problem ("urn:ecs:problem:validation"), or "about:blank" when the status says all.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// Error makes a Problem usable as an error, so services can return one.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}

// NewProblem builds a problem of the given kind; kind "" means about:blank.
func NewProblem(status int, kind, detail string) *Problem {
	typ := "about:blank"
	if kind != "" {
		typ = "urn:ecs:problem:" + kind
	}
	return &Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

// Validation is a 422 naming the invalid fields.
func Validation(detail string, fields ...FieldError) *Problem {
	p := NewProblem(http.StatusUnprocessableEntity, "validation", detail)
	p.Errors = fields
	return p
}

// WriteProblem answers with p, filling instance and request id, and aborts the chain.
func WriteProblem(c *gin.Context, p *Problem) {
	out := *p
	if out.Instance == "" {
		out.Instance = c.Request.URL.Path
	}
	out.RequestID = c.GetString(requestIDKey)
	c.Header("Content-Type", ProblemContentType)
	c.AbortWithStatusJSON(out.Status, out)
}
