package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/platform/db"
)

// MaxBatch is the most events one batch may hold.
const MaxBatch = 1000

// BatchResult is the outcome of one item of a batch: Event (and Replayed) when
// it was accepted, Err when it was refused.
type BatchResult struct {
	Event    Event
	Replayed bool
	Err      error
}

// PublishBatch stores the acceptable events of evs in one transaction and says,
// per item, what became of it. An item is refused alone (unknown, disabled or
// archived type; data off the schema; an idempotency key used for another
// request); the others still commit together. An error means nothing was
// written.
func (s *Store) PublishBatch(ctx context.Context, evs []NewEvent) ([]BatchResult, error) {
	if len(evs) > MaxBatch {
		return nil, fmt.Errorf("outbox: a batch holds at most %d events", MaxBatch)
	}
	res := make([]BatchResult, len(evs))
	data := make([][]byte, len(evs))
	for i, ev := range evs {
		var buf bytes.Buffer
		if err := json.Compact(&buf, ev.Data); err != nil {
			res[i].Err = fmt.Errorf("outbox: data is not JSON: %w", err)
			continue
		}
		data[i] = buf.Bytes()
	}
	for try := 0; ; try++ {
		versions, err := s.checkBatch(ctx, evs, data, res, try > 0)
		if err != nil {
			return nil, err
		}
		err = s.writeBatch(ctx, evs, data, res, versions)
		if db.IsCode(err, codeTypeChanged) && try < 3 {
			continue // a type changed since it was cached: check again on fresh data
		}
		return res, err
	}
}

// checkBatch refuses items whose type does not take events or whose data breaks
// the schema, and returns the version of every type the batch relies on.
func (s *Store) checkBatch(ctx context.Context, evs []NewEvent, data [][]byte, res []BatchResult, fresh bool) (map[string]int, error) {
	entries := map[string]*typeEntry{}
	versions := map[string]int{}
	for i, ev := range evs {
		if data[i] == nil {
			continue
		}
		res[i].Err = nil
		e, ok := entries[ev.Type]
		if !ok {
			if !fresh {
				e = s.cat.get(ev.Type)
			}
			if e == nil {
				var err error
				if e, err = s.cat.load(ctx, s, ev.Type); err != nil && !errors.Is(err, ErrUnknownEventType) {
					return nil, err
				}
			}
			entries[ev.Type] = e
		}
		if e == nil {
			res[i].Err = fmt.Errorf("%w: %q", ErrUnknownEventType, ev.Type)
			continue
		}
		if err := e.check(data[i]); err != nil {
			if !fresh {
				// A cached refusal may be stale: decide this type on fresh data.
				delete(entries, ev.Type)
				fresh2, lerr := s.cat.load(ctx, s, ev.Type)
				if lerr != nil && !errors.Is(lerr, ErrUnknownEventType) {
					return nil, lerr
				}
				entries[ev.Type] = fresh2
				if fresh2 != nil {
					err = fresh2.check(data[i])
					e = fresh2
				}
			}
			if err != nil {
				res[i].Err = err
				continue
			}
		}
		versions[ev.Type] = e.et.Version
	}
	return versions, nil
}

// writeBatch writes the items not refused so far.
func (s *Store) writeBatch(ctx context.Context, evs []NewEvent, data [][]byte, res []BatchResult, versions map[string]int) error {
	var (
		ids          []uuid.UUID
		types, datas []string
		keys, idems  []*string
		claimKeys    []string
		claimHashes  [][]byte
		claimIDs     []uuid.UUID
		index        = map[uuid.UUID]int{}
		hashes       = map[int][]byte{}
		typeNames    []string
		typeVersions []int
	)
	for i, ev := range evs {
		if res[i].Err != nil || data[i] == nil {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("outbox: new id: %w", err)
		}
		index[id] = i
		ids = append(ids, id)
		types = append(types, ev.Type)
		datas = append(datas, string(data[i]))
		var key, idem *string
		if ev.Key != "" {
			key = &evs[i].Key
		}
		if ev.IdempotencyKey != "" {
			idem = &evs[i].IdempotencyKey
			h := requestHash(ev.Type, ev.Key, data[i])
			hashes[i] = h
			claimKeys, claimHashes, claimIDs = append(claimKeys, ev.IdempotencyKey), append(claimHashes, h), append(claimIDs, id)
		}
		keys = append(keys, key)
		idems = append(idems, idem)
		res[i].Event = Event{ID: id, Type: ev.Type, Key: ev.Key, Data: data[i]}
	}
	if len(ids) == 0 {
		return nil
	}
	for n, v := range versions {
		typeNames = append(typeNames, n)
		typeVersions = append(typeVersions, v)
	}

	pids := pgUUIDs(ids)
	b := &pgx.Batch{}
	b.Queue(q.BatchCheckEventTypes, typeNames, typeVersions)
	b.Queue(q.BatchClaimIdempotency, claimKeys, claimHashes, pgUUIDs(claimIDs))
	b.Queue(q.BatchNextKeySeqs, pids, keys, idems)
	b.Queue(q.BatchInsertEvents, pids, types, keys, datas, idems)
	b.Queue(q.BatchInsertOutbox, pids)
	written := map[uuid.UUID]bool{}
	err := func() error {
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		for range 3 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			id     uuid.UUID
			keySeq *int64
			ev     Event
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &ev.CreatedAt, &keySeq}, func() error {
			r := &res[index[id]]
			r.Event.CreatedAt = ev.CreatedAt
			if keySeq != nil {
				r.Event.KeySeq = *keySeq
			}
			written[id] = true
			return nil
		}); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		for i := range res {
			res[i] = BatchResult{Err: res[i].Err}
		}
		if db.IsCode(err, codeTypeChanged) {
			return err
		}
		return fmt.Errorf("outbox: publish batch: %w", err)
	}
	if len(written) > 0 {
		s.WakeRelay(ctx)
	}

	// Items not written hold an idempotency key another event holds: a replay
	// if that event came from the same request, a conflict if not.
	var taken []string
	for _, id := range ids {
		if !written[id] {
			taken = append(taken, evs[index[id]].IdempotencyKey)
		}
	}
	if len(taken) == 0 {
		return nil
	}
	stored := map[string]Event{}
	storedHash := map[string][]byte{}
	var k string
	var h []byte
	rows, _ := s.x.Query(ctx, q.GetIdempotentMany, taken)
	for rows.Next() {
		ev, err := scanEvent(rows, &k, &h)
		if err != nil {
			rows.Close()
			return fmt.Errorf("outbox: read idempotency records: %w", err)
		}
		stored[k], storedHash[k] = ev, h
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("outbox: read idempotency records: %w", err)
	}
	for _, id := range ids {
		if written[id] {
			continue
		}
		i := index[id]
		key := evs[i].IdempotencyKey
		ev, ok := stored[key]
		switch {
		case !ok:
			res[i] = BatchResult{Err: fmt.Errorf("outbox: idempotency record %q vanished", key)}
		case !bytes.Equal(storedHash[key], hashes[i]):
			res[i] = BatchResult{Err: ErrIdempotencyReused}
		default:
			res[i] = BatchResult{Event: ev, Replayed: true}
		}
	}
	return nil
}
