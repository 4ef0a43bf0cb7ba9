package scenario

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventconfigservice/ecs/apps/loadgen/internal/load"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/report"
	"github.com/eventconfigservice/ecs/apps/loadgen/internal/roles"
	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/platform/kafka"
)

const relayMethod = `%s outbox rows (the orders of scenario 1, time-ordered ids, one event type,
a 6-partition topic) are committed with INSERT ... SELECT, vacuumed and
analysed; then a relay process is started and the rate is rows / (time from
spawning the relay until its ecs_relay_records_produced_total reached the row
count), start-up included. No API traffic and no worker run meanwhile. Peak
RSS is the relay's VmHWM. Ceilings, measured on the same rows just before:
reading them with COPY (the relay's claim query, unbatched) TO STDOUT, and
franz-go producing the same records (same topic layout, key, value and
headers; acks=all, idempotent, no linger, as the relay's client) from memory to
the same broker, asynchronously. The relay and ceiling topics sit outside the
worker's topic prefix and are deleted afterwards.`

// claimAll is the relay's claim query (outbox/relay/queries.sql) without its
// LIMIT: every committed row, in outbox order.
const claimAll = `SELECT o.id, e.id, e.type, e.key, e.key_seq, e.data::text, e.created_at, t.topic
FROM outbox o
JOIN events e ON e.id = o.event_id
JOIN event_types t ON t.name = e.type
WHERE o.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY o.id`

func relayDrain(ctx context.Context, e *Env, sc *report.Scenario) error {
	n := e.Cfg.RelayRows
	sc.Method = fmt.Sprintf(relayMethod, report.Num(float64(n)))
	const typ = "bench.relay"
	if _, err := e.eventType(ctx, typ); err != nil {
		return err
	}
	topic := "ecs.benchrelay" + e.Rig.RunID + "." + typ
	ceilingTopic := "ecs.benchrelay" + e.Rig.RunID + ".ceiling"
	if _, err := e.Rig.Pool.Exec(ctx, `UPDATE event_types SET topic = $2 WHERE name = $1`, typ, topic); err != nil {
		return fmt.Errorf("move the relay topic: %w", err)
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(e.Rig.Brokers...))
	if err != nil {
		return err
	}
	defer admin.Close()
	defer func() { // free the broker's memory for the next scenarios
		_, _ = kadm.NewClient(admin).DeleteTopics(context.WithoutCancel(ctx), topic, ceilingTopic)
	}()

	if err := e.reset(ctx); err != nil {
		return err
	}
	t := time.Now()
	if err := seedOutbox(ctx, e, typ, n); err != nil {
		return err
	}
	sc.Notes = append(sc.Notes, fmt.Sprintf("Seeding %s rows took %s.", report.Num(float64(n)), time.Since(t).Round(100*time.Millisecond)))

	copyRate, err := copyOut(ctx, e, n)
	if err != nil {
		return err
	}
	produceRate, err := produceFromMemory(ctx, e, ceilingTopic, n)
	if err != nil {
		return err
	}
	lower, lowerName := min(copyRate, produceRate), "COPY TO"
	if produceRate < copyRate {
		lowerName = "franz-go from memory"
	}

	m := e.meter()
	if err := e.Rig.StartRole(ctx, roles.Relay); err != nil {
		return err
	}
	p := e.Rig.Proc(roles.Relay)
	// A guess at the drain's length (the relay's profile needs it up front).
	wait := e.profile(ctx, "s3", 0, time.Duration(float64(n)/150_000*float64(time.Second)), roles.Relay)
	var first, done time.Time
	deadline := time.Now().Add(10 * time.Minute)
	for {
		v, err := p.Metric(ctx, "ecs_relay_records_produced_total")
		now := time.Now()
		if err == nil && v > 0 && first.IsZero() {
			first = now
		}
		if err == nil && int(v) >= n {
			done = now
			break
		}
		if now.After(deadline) {
			return fmt.Errorf("the relay produced %.0f of %d rows in 10 minutes", v, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	used, over := m.stop()
	u, err := p.Usage()
	if err != nil {
		return err
	}
	used["relay"] = u.CPU
	sum, _ := p.Metric(ctx, "ecs_relay_batch_duration_seconds_sum")
	count, _ := p.Metric(ctx, "ecs_relay_batch_duration_seconds_count")
	files := wait()
	if err := e.Rig.StopRole(ctx, roles.Relay); err != nil {
		return err
	}
	var left int
	if err := e.Rig.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&left); err != nil {
		return err
	}
	took := done.Sub(p.Started)
	rate := float64(n) / took.Seconds()
	external := len(e.Cfg.Brokers) > 0
	verdict := report.Check(rate >= 0.5*lower && left == 0 && (!external || rate >= 50000))
	target := "≥ 0.50 × lower ceiling (≥ 50,000 rows/s applies on real Kafka)"
	if external {
		target = "≥ 50,000 rows/s and ≥ 0.50 × lower ceiling"
	}
	batchMean := "n/a"
	if count > 0 {
		batchMean = load.Ms(time.Duration(sum / count * float64(time.Second)))
	}
	sc.Rows = append(sc.Rows,
		report.Row{
			Name: fmt.Sprintf("relay drain of %s rows", report.Num(float64(n))), Value: rate, Unit: "rows/s",
			CeilingName: "lower of the two below: " + lowerName, Ceiling: lower,
			Target: target, Verdict: verdict,
			Detail: fmt.Sprintf("%.0f batches, mean %s each", count, batchMean),
		},
		report.Row{Name: "ceiling: COPY (claim query) TO STDOUT", Value: copyRate, Unit: "rows/s"},
		report.Row{Name: "ceiling: franz-go producing from memory", Value: produceRate, Unit: "rows/s"},
		report.Row{Name: "relay peak RSS (VmHWM) during the drain", Value: float64(u.PeakRSS) / (1 << 20), Unit: "MiB",
			Target: "bounded (< 256 MiB)", Verdict: report.Check(u.PeakRSS < 256<<20)},
	)
	sc.Notes = append(sc.Notes,
		fmt.Sprintf("The relay took %s from spawn to its first produced row and %s in all; %d rows were left in the outbox.",
			first.Sub(p.Started).Round(time.Millisecond), took.Round(time.Millisecond), left),
		cpuNote("the drain", used, over))
	sc.Notes = append(sc.Notes, profileNote(files)...)
	return nil
}

// seedOutbox commits n events of typ and their outbox rows, 100,000 per
// transaction, then vacuums and analyses the tables as autovacuum would.
func seedOutbox(ctx context.Context, e *Env, typ string, n int) error {
	const chunk = 100_000
	for from := 1; from <= n; from += chunk {
		to := min(from+chunk-1, n)
		_, err := e.Rig.Pool.Exec(ctx, `WITH e AS (
    INSERT INTO events (id, type, key, key_seq, data)
    SELECT ecs_uuidv7(), $1, 's3-o-' || g, 1,
           ('{"order_id":' || g || ',"amount":42.5,"currency":"EUR","customer":"c-' || (g % 1000) || '","items":3}')::json
    FROM generate_series($2::bigint, $3::bigint) g
    ORDER BY g
    RETURNING id
)
INSERT INTO outbox (event_id) SELECT id FROM e ORDER BY id`, typ, from, to)
		if err != nil {
			return fmt.Errorf("seed the outbox: %w", err)
		}
	}
	for _, s := range []string{`VACUUM ANALYZE events`, `VACUUM ANALYZE outbox`, `CHECKPOINT`} {
		if _, err := e.Rig.Pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// copyOut reads every outbox row with the claim query through COPY TO STDOUT
// and returns rows/s.
func copyOut(ctx context.Context, e *Env, n int) (float64, error) {
	conn, err := e.Rig.Pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	t := time.Now()
	tag, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, `COPY (`+claimAll+`) TO STDOUT`)
	if err != nil {
		return 0, fmt.Errorf("COPY TO: %w", err)
	}
	if int(tag.RowsAffected()) != n {
		return 0, fmt.Errorf("COPY TO read %d rows, want %d", tag.RowsAffected(), n)
	}
	return float64(n) / time.Since(t).Seconds(), nil
}

// produceFromMemory builds the relay's records for every outbox row (not
// timed), then produces them to topic and returns rows/s.
func produceFromMemory(ctx context.Context, e *Env, topic string, n int) (float64, error) {
	recs := make([]*kgo.Record, 0, n)
	rows, err := e.Rig.Pool.Query(ctx, claimAll)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var (
			oid       int64
			id        uuid.UUID
			typ, data string
			key       *string
			keySeq    *int64
			createdAt time.Time
			tp        string
		)
		if err := rows.Scan(&oid, &id, &typ, &key, &keySeq, &data, &createdAt, &tp); err != nil {
			rows.Close()
			return 0, err
		}
		k := id.String()
		if key != nil {
			k = *key
		}
		r := &kgo.Record{Topic: topic, Key: []byte(k), Value: outbox.WebhookBody(typ, createdAt, []byte(data)),
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderEventID, Value: []byte(id.String())}, {Key: kafka.HeaderEventType, Value: []byte(typ)}}}
		if keySeq != nil {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: kafka.HeaderKeySeq, Value: strconv.AppendInt(nil, *keySeq, 10)})
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Rig.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30*time.Second), kgo.ProducerLinger(0), kgo.ClientID("ecs-loadgen"))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	kcfg := kafka.Config{Brokers: e.Rig.Brokers}.WithDefaults()
	if _, err := kafka.NewTopics(cl, kcfg).Ensure(ctx, topic); err != nil {
		return 0, err
	}
	var (
		mu       sync.Mutex
		firstErr error
	)
	t := time.Now()
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	took := time.Since(t)
	if firstErr != nil {
		return 0, fmt.Errorf("produce: %w", firstErr)
	}
	return float64(len(recs)) / took.Seconds(), nil
}
