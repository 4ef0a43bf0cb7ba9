package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	ecshttp "github.com/eventconfigservice/ecs/platform/http"
)

// AuditEntry is one recorded change.
type AuditEntry struct {
	ID           int64           `json:"id"`
	At           time.Time       `json:"at"`
	Actor        string          `json:"actor"`
	Action       string          `json:"action"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Before       json.RawMessage `json:"before"`
	After        json.RawMessage `json:"after"`
	RequestID    string          `json:"request_id"`
}

// change runs f in a transaction; f makes the change and returns what to audit.
// The audit entry commits with the change or not at all.
func (a *API) change(c *gin.Context, f func(tx pgx.Tx) (audit, error)) error {
	return pgx.BeginFunc(c, a.pool, func(tx pgx.Tx) error {
		au, err := f(tx)
		if err != nil {
			return err
		}
		return a.audit(c, tx, au)
	})
}

// audit is one entry to write. Before and After must already be free of secrets.
type audit struct {
	action, resourceType, resourceID string
	before, after                    any
}

func (a *API) audit(c *gin.Context, tx pgx.Tx, au audit) error {
	actor := "unknown"
	if p, ok := c.Get(principalKey); ok {
		actor = p.(principal).subject
	}
	enc := func(v any) ([]byte, error) {
		if v == nil {
			return nil, nil
		}
		return json.Marshal(v)
	}
	before, err := enc(au.before)
	if err != nil {
		return fmt.Errorf("api: audit: %w", err)
	}
	after, err := enc(au.after)
	if err != nil {
		return fmt.Errorf("api: audit: %w", err)
	}
	if _, err := tx.Exec(context.WithoutCancel(c), q.InsertAudit, actor, au.action, au.resourceType, au.resourceID, before, after, ecshttp.RequestID(c)); err != nil {
		return fmt.Errorf("api: audit: %w", err)
	}
	return nil
}

func (a *API) listAudit(c *gin.Context) {
	qp := &query{c: c}
	actor, action, rtype, rid := qp.str("actor"), qp.str("action"), qp.str("resource_type"), qp.str("resource_id")
	since, until, before, limit := qp.time("since"), qp.time("until"), qp.seqCursor(), qp.limit()
	if !qp.ok() {
		return
	}
	rows, _ := a.pool.Query(c, q.ListAudit, actor, action, rtype, rid, since, until, before, limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var b, af []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.ResourceType, &e.ResourceID, &b, &af, &e.RequestID)
		e.Before, e.After = b, af
		return e, err
	})
	if err != nil {
		a.internal(c, err)
		return
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	c.JSON(http.StatusOK, pageOf(out, more, func(e AuditEntry) string { return seqCursor(e.ID) }))
}
