package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/eventconfigservice/ecs/platform/db"
)

// Catalog errors.
var (
	ErrEventTypeArchived = errors.New("event type is archived")
	ErrEventTypeDisabled = errors.New("event type is disabled")
	// ErrVersionMismatch means the caller's If-Match no longer holds.
	ErrVersionMismatch = errors.New("event type was changed since it was read")
)

// Limits of the catalog.
const (
	MaxExamples     = 10
	MaxSchemaBytes  = 64 << 10
	MaxDescription  = 1000
	MaxPageSize     = 1000
	DefaultPageSize = 100
)

// EventType is an entry of the event catalog.
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Topic is the Kafka topic the type's events go to.
	Topic string `json:"topic"`
	// Schema is a JSON Schema (draft 2020-12) that every event's data must
	// match, or nil.
	Schema   json.RawMessage   `json:"schema"`
	Examples []json.RawMessage `json:"examples"`
	// Enabled false rejects new events for now; Archived rejects them for good
	// (until unarchived) and hides the type from default listings.
	Enabled    bool       `json:"enabled"`
	Archived   bool       `json:"archived"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
	// Version grows with every change; the API serves it as the ETag.
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func scanEventType(r pgx.Row) (EventType, error) {
	var et EventType
	var schema, examples []byte
	err := r.Scan(&et.Name, &et.Description, &et.Topic, &schema, &examples, &et.Enabled, &et.ArchivedAt, &et.Version, &et.CreatedAt, &et.UpdatedAt)
	if err != nil {
		return EventType{}, err
	}
	if schema != nil {
		et.Schema = schema
	}
	if err := json.Unmarshal(examples, &et.Examples); err != nil {
		return EventType{}, fmt.Errorf("examples: %w", err)
	}
	if et.Examples == nil {
		et.Examples = []json.RawMessage{}
	}
	et.Archived = et.ArchivedAt != nil
	return et, nil
}

// EventTypeSpec is what can be set on an event type.
type EventTypeSpec struct {
	Description string
	Schema      json.RawMessage // nil: none
	Examples    []json.RawMessage
	Enabled     bool
	Archived    bool
}

// CheckSpec validates a spec: the schema compiles and every example matches it.
// The error is a *SchemaError naming the field, or a plain error.
func CheckSpec(spec EventTypeSpec) error {
	if len(spec.Description) > MaxDescription {
		return &SchemaError{Violations: []Violation{{Field: "/description", Message: "must be at most 1000 characters"}}}
	}
	if len(spec.Examples) > MaxExamples {
		return &SchemaError{Violations: []Violation{{Field: "/examples", Message: "must hold at most 10 examples"}}}
	}
	if spec.Schema == nil {
		return nil
	}
	if len(spec.Schema) > MaxSchemaBytes {
		return &SchemaError{Violations: []Violation{{Field: "/schema", Message: "must be at most 64 KiB"}}}
	}
	s, err := CompileSchema(spec.Schema)
	if err != nil {
		return &SchemaError{Violations: []Violation{{Field: "/schema", Message: err.Error()}}}
	}
	for i, ex := range spec.Examples {
		if err := ValidateData(s, ex, "/examples/"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

func examplesJSON(ex []json.RawMessage) []byte {
	if ex == nil {
		ex = []json.RawMessage{}
	}
	b, _ := json.Marshal(ex)
	return b
}

func schemaParam(s json.RawMessage) any {
	if s == nil {
		return nil
	}
	return string(s)
}

// CreateEventType adds name to the catalog. Call CheckSpec first.
func (s *Store) CreateEventType(ctx context.Context, name string, spec EventTypeSpec) (EventType, error) {
	et, err := scanEventType(s.x.QueryRow(ctx, q.CreateEventType, name, spec.Description, s.topic(name),
		schemaParam(spec.Schema), examplesJSON(spec.Examples), spec.Enabled))
	if db.IsCode(err, db.CodeUniqueViolation) {
		return EventType{}, fmt.Errorf("%w: %s", ErrEventTypeExists, name)
	}
	if err != nil {
		return EventType{}, fmt.Errorf("outbox: create event type: %w", err)
	}
	return et, nil
}

// GetEventType returns one event type.
func (s *Store) GetEventType(ctx context.Context, name string) (EventType, error) {
	et, err := scanEventType(s.x.QueryRow(ctx, q.GetEventType, name))
	if db.IsNoRows(err) {
		return EventType{}, ErrNotFound
	}
	if err != nil {
		return EventType{}, fmt.Errorf("outbox: get event type: %w", err)
	}
	return et, nil
}

// ListEventTypes returns up to limit types named after after, by name, and
// whether more follow.
func (s *Store) ListEventTypes(ctx context.Context, after string, limit int, includeArchived bool) ([]EventType, bool, error) {
	if limit <= 0 || limit > MaxPageSize {
		limit = DefaultPageSize
	}
	rows, _ := s.x.Query(ctx, q.ListEventTypes, after, includeArchived, limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventType, error) { return scanEventType(r) })
	if err != nil {
		return nil, false, fmt.Errorf("outbox: list event types: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// EventTypesNamed returns the event types among names that exist, by name.
func (s *Store) EventTypesNamed(ctx context.Context, names []string) (map[string]EventType, error) {
	rows, _ := s.x.Query(ctx, q.EventTypesNamed, names)
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventType, error) { return scanEventType(r) })
	if err != nil {
		return nil, fmt.Errorf("outbox: event types: %w", err)
	}
	out := make(map[string]EventType, len(list))
	for _, et := range list {
		out[et.Name] = et
	}
	return out, nil
}

// UpdateEventType replaces the settable fields of name. ifVersion, when not
// nil, must be the current version (optimistic concurrency).
func (s *Store) UpdateEventType(ctx context.Context, name string, spec EventTypeSpec, ifVersion *int) (EventType, error) {
	et, err := scanEventType(s.x.QueryRow(ctx, q.UpdateEventType, name, spec.Description, schemaParam(spec.Schema),
		examplesJSON(spec.Examples), spec.Enabled, spec.Archived, ifVersion))
	if db.IsNoRows(err) {
		if _, gerr := s.GetEventType(ctx, name); gerr != nil {
			return EventType{}, gerr
		}
		return EventType{}, ErrVersionMismatch
	}
	if err != nil {
		return EventType{}, fmt.Errorf("outbox: update event type: %w", err)
	}
	return et, nil
}

// catalog caches event types and their compiled schemas for Publish. An entry
// is trusted only as far as the version check sent with each publish allows:
// a changed type fails that check, and the entry is reloaded.
type catalog struct {
	mu      sync.Mutex
	entries map[string]*typeEntry
}

type typeEntry struct {
	et     EventType
	schema *jsonschema.Schema
}

func (c *catalog) get(name string) *typeEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[name]
}

// load reads name from the database into the cache.
func (c *catalog) load(ctx context.Context, s *Store, name string) (*typeEntry, error) {
	et, err := s.GetEventType(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEventType, name)
	}
	if err != nil {
		return nil, err
	}
	e := &typeEntry{et: et}
	if et.Schema != nil {
		if e.schema, err = CompileSchema(et.Schema); err != nil {
			return nil, fmt.Errorf("outbox: stored schema of %s: %w", name, err)
		}
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*typeEntry{}
	}
	c.entries[name] = e
	c.mu.Unlock()
	return e, nil
}

// check returns the entry for name if an event of it may be published now, and
// validates data against its schema.
func (e *typeEntry) check(data json.RawMessage) error {
	switch {
	case e.et.Archived:
		return fmt.Errorf("%w: %s", ErrEventTypeArchived, e.et.Name)
	case !e.et.Enabled:
		return fmt.Errorf("%w: %s", ErrEventTypeDisabled, e.et.Name)
	case e.schema != nil:
		return ValidateData(e.schema, data, "/data")
	}
	return nil
}
