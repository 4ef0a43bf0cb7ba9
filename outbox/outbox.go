// Package outbox writes accepted events and their outbox rows in one PostgreSQL
// transaction and owns the event catalog that maps event types to Kafka topics.
// Package outbox/relay moves the rows to Kafka.
package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventconfigservice/ecs/platform/db"
)

//go:embed queries.sql
var queriesSQL string

var q struct {
	CreateEventType       string `sql:"create_event_type"`
	ListEventTypes        string `sql:"list_event_types"`
	GetEventType          string `sql:"get_event_type"`
	UpdateEventType       string `sql:"update_event_type"`
	CheckEventType        string `sql:"check_event_type"`
	EventTypesNamed       string `sql:"event_types_named"`
	BatchCheckEventTypes  string `sql:"batch_check_event_types"`
	BatchClaimIdempotency string `sql:"batch_claim_idempotency"`
	BatchNextKeySeqs      string `sql:"batch_next_key_seqs"`
	BatchInsertEvents     string `sql:"batch_insert_events"`
	BatchInsertOutbox     string `sql:"batch_insert_outbox"`
	Notify                string `sql:"notify"`
	GetIdempotentMany     string `sql:"get_idempotent_many"`
	ListEvents            string `sql:"list_events"`
	ClaimIdempotency      string `sql:"claim_idempotency_key"`
	NextKeySeq            string `sql:"next_key_seq"`
	Publish               string `sql:"publish"`
	GetIdempotent         string `sql:"get_idempotent"`
	GetEvent              string `sql:"get_event"`
}

func init() { db.MustLoadQueries(queriesSQL, &q) }

// Domain errors; the API maps them to problem documents.
var (
	ErrNotFound          = errors.New("not found")
	ErrEventTypeExists   = errors.New("event type already exists")
	ErrUnknownEventType  = errors.New("unknown event type")
	ErrIdempotencyReused = errors.New("idempotency key was used with a different request")
)

// Event is an accepted event.
type Event struct {
	ID   uuid.UUID `json:"id"`
	Type string    `json:"type"`
	Key  string    `json:"key,omitempty"`
	// KeySeq is the event's position among its key's events (1, 2, ...).
	KeySeq    int64           `json:"key_seq,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
}

// NewEvent is what a producer submits.
type NewEvent struct {
	Type string
	// Key orders events: events with the same key reach Kafka, and each
	// subscriber, in the order they were accepted. Empty means the event id.
	Key  string
	Data json.RawMessage
	// IdempotencyKey, when set, makes a retried submission return the event the
	// first one created.
	IdempotencyKey string
}

// Limits on names and keys.
const (
	MaxEventTypeName  = 128
	MaxKey            = 1024
	MaxIdempotencyKey = 255
)

var eventTypeName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// ValidEventTypeName reports whether name is lowercase and dot-separated
// ("order.created"); names become Kafka topic names, so the alphabet is narrow.
func ValidEventTypeName(name string) bool {
	return len(name) <= MaxEventTypeName && eventTypeName.MatchString(name)
}

// Store reads and writes the catalog and the outbox.
type Store struct {
	pool  *pgxpool.Pool
	x     db.Executor // the pool, or a caller's transaction (Tx)
	topic func(eventType string) string
	cat   *catalog
	waker *waker
	tx    pgx.Tx // set by Tx: Publish writes in the caller's transaction
}

// NewStore uses topic to name the Kafka topic of a new event type.
func NewStore(pool *pgxpool.Pool, topic func(eventType string) string) *Store {
	notify := func(ctx context.Context) error {
		_, err := pool.Exec(ctx, q.Notify)
		return err
	}
	return &Store{pool: pool, x: pool, topic: topic, cat: &catalog{}, waker: newWaker(notify)}
}

// WakeRelay wakes the relay after events committed; Publish calls it, and a
// caller that published in its own transaction (Tx) calls it after the commit.
// Its error is dropped on purpose: the events are stored, and the relay's
// polling picks them up within ECS_RELAY_POLL_INTERVAL without the wake-up.
func (s *Store) WakeRelay(ctx context.Context) {
	_ = s.waker.wake(ctx)
}

// Tx returns a store whose catalog reads and writes, and whose Publish, run in
// tx, so a caller can commit them with its own writes (the audit log; the
// worker's disable and its ecs.subscription.disabled event). Such a Publish
// does not wake the relay (the caller calls WakeRelay after its commit) and
// does not retry when the event type changed under it (the transaction is
// spent: the caller retries).
func (s *Store) Tx(tx pgx.Tx) *Store {
	c := *s
	c.x, c.tx = tx, tx
	return &c
}

// Publish stores ev and its outbox row in one transaction. With an idempotency
// key already used for the same request it returns the first event and
// replayed=true; used for another request, ErrIdempotencyReused. The type must
// exist, be enabled and not archived, and data must match its schema (a
// *SchemaError says where it does not).
func (s *Store) Publish(ctx context.Context, ev NewEvent) (Event, bool, error) {
	var data bytes.Buffer
	if err := json.Compact(&data, ev.Data); err != nil {
		return Event{}, false, fmt.Errorf("outbox: data is not JSON: %w", err)
	}
	entry := s.cat.get(ev.Type)
	for try := 0; ; try++ {
		var err error
		if entry == nil {
			if entry, err = s.cat.load(ctx, s, ev.Type); err != nil {
				return Event{}, false, err
			}
		}
		if err := entry.check(data.Bytes()); err != nil {
			if try == 0 {
				entry = nil // a cached refusal may be stale: decide on fresh data
				continue
			}
			return Event{}, false, err
		}
		out, replayed, err := s.publish(ctx, ev, data.Bytes(), entry.et.Version)
		if db.IsCode(err, codeTypeChanged) && try < 3 && s.tx == nil {
			entry = nil // the type changed since it was cached
			continue
		}
		return out, replayed, err
	}
}

// codeTypeChanged is raised by ecs_check_event_type.
const codeTypeChanged = "EC001"

// publish writes the event, checking in the same transaction that its type is
// still at version. The statements go in one pipeline, so the whole write is one
// round trip and one implicit transaction: an error in any statement rolls back
// all of them. Once it committed, the relay is woken (wake.go).
func (s *Store) publish(ctx context.Context, ev NewEvent, compact []byte, version int) (out Event, replayed bool, err error) {
	data := bytes.NewBuffer(compact)
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, false, fmt.Errorf("outbox: new id: %w", err)
	}
	out = Event{ID: id, Type: ev.Type, Key: ev.Key, Data: data.Bytes()}
	var key, idem *string
	if ev.Key != "" {
		key = &ev.Key
	}
	var hash []byte
	b := &pgx.Batch{}
	b.Queue(q.CheckEventType, ev.Type, version)
	if ev.IdempotencyKey != "" {
		idem = &ev.IdempotencyKey
		hash = requestHash(ev.Type, ev.Key, data.Bytes())
		b.Queue(q.ClaimIdempotency, idem, hash, pgUUID(id))
	}
	if key != nil {
		b.Queue(q.NextKeySeq, key, idem, pgUUID(id))
	}
	b.Queue(q.Publish, pgUUID(id), ev.Type, key, data.String(), idem)

	err = func() error {
		var br pgx.BatchResults
		if s.tx != nil {
			br = s.tx.SendBatch(ctx, b)
		} else {
			br = s.pool.SendBatch(ctx, b)
		}
		defer br.Close()
		for range b.Len() - 1 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		var keySeq *int64
		if err := br.QueryRow().Scan(&out.CreatedAt, &keySeq); err != nil {
			return err
		}
		if keySeq != nil {
			out.KeySeq = *keySeq
		}
		return br.Close()
	}()
	switch {
	case err == nil:
		if s.tx == nil {
			s.WakeRelay(ctx)
		}
		return out, false, nil
	case db.IsCode(err, db.CodeForeignKeyViolation, "events_type_fkey"):
		return Event{}, false, fmt.Errorf("%w: %q", ErrUnknownEventType, ev.Type)
	case db.IsNoRows(err) && idem != nil:
		return s.replay(ctx, ev.IdempotencyKey, hash)
	case db.IsCode(err, codeTypeChanged):
		return Event{}, false, err
	default:
		return Event{}, false, fmt.Errorf("outbox: publish: %w", err)
	}
}

// pgUUID hands id to pgx as its own UUID type. A uuid.UUID is a
// driver.Valuer whose string pgx fails to encode as binary, then parses back:
// errors built and thrown away for every value, which took over a third of the
// API's CPU in 1,000-event batches (docs/benchmarks.md, scenario 2).
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// pgUUIDs is pgUUID for a slice.
func pgUUIDs(ids []uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgUUID(id)
	}
	return out
}

// replay answers a repeated idempotency key with the event the key created.
func (s *Store) replay(ctx context.Context, idemKey string, hash []byte) (Event, bool, error) {
	var stored []byte
	ev, err := scanEvent(s.x.QueryRow(ctx, q.GetIdempotent, idemKey), &stored)
	if err != nil {
		return Event{}, false, fmt.Errorf("outbox: read idempotency record: %w", err)
	}
	if !bytes.Equal(stored, hash) {
		return Event{}, false, ErrIdempotencyReused
	}
	return ev, true, nil
}

// scanEvent reads id, type, key, key_seq, data, created_at after any leading
// destinations in pre.
func scanEvent(row pgx.Row, pre ...any) (Event, error) {
	var ev Event
	var key *string
	var keySeq *int64
	var data string
	if err := row.Scan(append(pre, &ev.ID, &ev.Type, &key, &keySeq, &data, &ev.CreatedAt)...); err != nil {
		return Event{}, err
	}
	if key != nil {
		ev.Key = *key
	}
	if keySeq != nil {
		ev.KeySeq = *keySeq
	}
	ev.Data = json.RawMessage(data)
	return ev, nil
}

// GetEvent returns one event.
func (s *Store) GetEvent(ctx context.Context, id uuid.UUID) (Event, error) {
	ev, err := scanEvent(s.x.QueryRow(ctx, q.GetEvent, id))
	if db.IsNoRows(err) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("outbox: get event: %w", err)
	}
	return ev, nil
}

// requestHash fingerprints what an idempotency key promises to repeat: the same
// type, key and data (compacted, so whitespace does not count).
func requestHash(typ, key string, data []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(typ), []byte(key), data} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write(part)
	}
	return h.Sum(nil)
}

// TimestampLayout formats webhook timestamps: UTC with microseconds, the
// precision PostgreSQL stores, so a body rebuilt from the database for a retry is
// byte-identical to the first one.
const TimestampLayout = "2006-01-02T15:04:05.000000Z"

// WebhookBody is the payload subscribers receive and the value of the event's
// Kafka record: {"type","timestamp","data"}. data must be compact JSON.
func WebhookBody(typ string, ts time.Time, data []byte) []byte {
	t, _ := json.Marshal(typ)
	b := make([]byte, 0, len(data)+len(t)+64)
	b = append(b, `{"type":`...)
	b = append(b, t...)
	b = append(b, `,"timestamp":"`...)
	b = ts.UTC().AppendFormat(b, TimestampLayout)
	b = append(b, `","data":`...)
	b = append(b, data...)
	b = append(b, '}')
	return b
}

// EventFilter selects events; nil fields match everything.
type EventFilter struct {
	Type  *string
	Key   *string
	Since *time.Time // created at or after
	Until *time.Time // created before
	// Before is the last id of the previous page.
	Before *uuid.UUID
	// Limit is the page size (1 to 1000; default 100).
	Limit int
}

// ListEvents returns matching events, newest first, and whether more follow.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, bool, error) {
	if f.Limit <= 0 || f.Limit > MaxPageSize {
		f.Limit = DefaultPageSize
	}
	rows, _ := s.x.Query(ctx, q.ListEvents, f.Type, f.Key, f.Since, f.Until, f.Before, f.Limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, false, fmt.Errorf("outbox: list events: %w", err)
	}
	more := len(out) > f.Limit
	if more {
		out = out[:f.Limit]
	}
	return out, more, nil
}
