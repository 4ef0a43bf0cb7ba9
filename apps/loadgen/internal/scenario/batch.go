package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
)

// batchClients is the concurrency of scenario 2.
const batchClients = 4

const batchMethod = `%d clients in a closed loop each POST /v1/events:batch with 100, then 1,000
events per call (the events of scenario 1: fresh keys, idempotency keys, schema
validation). Only the api role runs. Ceiling: the same %d concurrent clients
writing the same rows with COPY (pgx CopyFrom) in one transaction per call:
key_sequences, idempotency_keys, events and outbox rows, plus the one
pg_notify the API sends per batch. Every measurement starts from the same
state (see "Setup": stored history, empty outbox, vacuumed, analysed,
checkpointed). Latency is per call.`

func batches(ctx context.Context, e *Env, sc *report.Scenario) error {
	sc.Method = fmt.Sprintf(batchMethod, batchClients, batchClients)
	const typ = "bench.batch"
	if _, err := e.eventType(ctx, typ); err != nil {
		return err
	}
	cl := e.Client()
	var seq, cseq atomic.Int64
	for _, size := range []int{100, 1000} {
		if err := e.reset(ctx); err != nil {
			return err
		}
		want := []byte(`"status":202`)
		op := func(ctx context.Context, w int) (int, error) {
			first := seq.Add(int64(size)) - int64(size) + 1
			code, raw, err := cl.Post(ctx, "/v1/events:batch", batchBody(nil, "s2", typ, first, size))
			if err != nil {
				return 0, err
			}
			if code != http.StatusOK {
				return 0, fmt.Errorf("POST /v1/events:batch: status %d: %.200s", code, raw)
			}
			if n := bytes.Count(raw, want); n != size {
				return 0, fmt.Errorf("POST /v1/events:batch: %d of %d events accepted: %.300s", n, size, raw)
			}
			return size, nil
		}
		tag := fmt.Sprintf("s2-%d", size)
		wait := e.profile(ctx, tag, e.Cfg.Warm, e.Cfg.Window, roles.API)
		m := e.meter(roles.API)
		res := load.Closed(ctx, batchClients, e.Cfg.Warm, e.Cfg.Window, op)
		used, over := m.stop()
		files := wait()
		if res.Errors > 0 {
			sc.Notes = append(sc.Notes, fmt.Sprintf("%d-event batches: %d calls failed in the window; the first: %v", size, res.Errors, res.FirstErr))
		}
		sc.Notes = append(sc.Notes, cpuNote(fmt.Sprintf("the API run with %d-event batches", size), used, over))
		sc.Notes = append(sc.Notes, profileNote(files)...)

		if err := e.reset(ctx); err != nil {
			return err
		}
		cop := func(ctx context.Context, w int) (int, error) {
			first := cseq.Add(int64(size)) - int64(size) + 1
			return size, copyBatch(ctx, e, typ, first, size)
		}
		m = e.meter()
		ceil := load.Closed(ctx, batchClients, e.Cfg.Warm, e.Cfg.Window, cop)
		used, over = m.stop()
		if ceil.Errors > 0 {
			return fmt.Errorf("COPY ceiling: %d calls failed; the first: %w", ceil.Errors, ceil.FirstErr)
		}
		sc.Notes = append(sc.Notes, cpuNote(fmt.Sprintf("the COPY run with %d-row batches", size), used, over))
		lat, clat := res.Latency, ceil.Latency
		sc.Rows = append(sc.Rows, report.Row{
			Name:  fmt.Sprintf("POST /v1/events:batch, %d events per call, %d clients", size, batchClients),
			Value: res.Rate(), Unit: "events/s",
			CeilingName: fmt.Sprintf("COPY, %d rows per transaction", size), Ceiling: ceil.Rate(),
			Target:  "≥ 50,000 events/s and ≥ 0.50 × ceiling",
			Verdict: report.Check(res.Errors == 0 && res.Rate() >= 50000 && res.Rate() >= 0.5*ceil.Rate()),
			Latency: &lat, CeilingLatency: &clat,
		})
	}
	return nil
}

// copyBatch writes the rows the API writes for orders first..first+n-1 with
// COPY, in one transaction.
func copyBatch(ctx context.Context, e *Env, typ string, first int64, n int) error {
	seqs := make([][]any, n)
	idems := make([][]any, n)
	events := make([][]any, n)
	outbox := make([][]any, n)
	for i := range n {
		o := first + int64(i)
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		key, idem := names("s2c", o)
		data := appendData(nil, o)
		seqs[i] = []any{key, int64(1)}
		idems[i] = []any{idem, requestHash(typ, key, data), id}
		events[i] = []any{id, typ, key, int64(1), json.RawMessage(data)}
		outbox[i] = []any{id}
	}
	tx, err := e.Rig.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"key_sequences", []string{"key", "seq"}, seqs},
		{"idempotency_keys", []string{"key", "request_hash", "event_id"}, idems},
		{"events", []string{"id", "type", "key", "key_seq", "data"}, events},
		{"outbox", []string{"event_id"}, outbox},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("copy %s: %w", c.table, err)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify('ecs_outbox', '')`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
