package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventconfigservice/ecs/outbox"
	"github.com/eventconfigservice/ecs/outbox/relay"
	"github.com/eventconfigservice/ecs/platform/db/dbtest"
	"github.com/eventconfigservice/ecs/platform/kafka"
	"github.com/eventconfigservice/ecs/platform/logging"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

type testBundle struct {
	pool  *pgxpool.Pool
	store *outbox.Store
	emb   *kafka.Embedded
	kcfg  kafka.Config
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, _ := dbtest.NewDB(t)
	emb, err := kafka.StartEmbedded("", logging.Discard())
	require.NoError(t, err)
	t.Cleanup(emb.Close)
	kcfg := kafka.Config{Brokers: emb.Brokers(), Partitions: 3}.WithDefaults()
	store := outbox.NewStore(pool, kcfg.Topic)
	_, err = store.CreateEventType(context.Background(), "order.created", outbox.EventTypeSpec{Enabled: true})
	require.NoError(t, err)
	return &testBundle{pool: pool, store: store, emb: emb, kcfg: kcfg}
}

func (b *testBundle) startRelay(t *testing.T) *relay.Relay {
	return b.startRelayWith(t, relay.Config{})
}

// startRelayWith starts a relay with cfg's batching (the test timings are fixed).
func (b *testBundle) startRelayWith(t *testing.T, cfg relay.Config) *relay.Relay {
	t.Helper()
	cfg.PollInterval, cfg.LeaderRetry, cfg.ProduceTimeout = 100*time.Millisecond, 50*time.Millisecond, time.Second
	r, err := relay.New(cfg, b.kcfg, b.pool, testLogger(), nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { r.Stop(context.Background()) })
	return r
}

// consumer reads the event topic from the start and sends event ids, in order.
func (b *testBundle) consumer(t *testing.T) <-chan string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.kcfg.Brokers...), kgo.ConsumeTopics(b.kcfg.Topic("order.created")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(50*time.Millisecond), kgo.MetadataMaxAge(100*time.Millisecond))
	require.NoError(t, err)
	out := make(chan string, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == kafka.HeaderEventID {
						out <- string(h.Value)
					}
				}
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return out
}

func (b *testBundle) publish(t *testing.T, key string) string {
	t.Helper()
	ev, _, err := b.store.Publish(context.Background(), outbox.NewEvent{Type: "order.created", Key: key, Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	return ev.ID.String()
}

func receive(t *testing.T, ch <-chan string, n int) []string {
	t.Helper()
	var got []string
	deadline := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case id := <-ch:
			got = append(got, id)
		case <-deadline:
			t.Fatalf("received %d of %d records", len(got), n)
		}
	}
	return got
}

func TestRelayNeverSkipsARowThatCommitsLate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	recs := b.consumer(t)
	b.startRelay(t)
	first := b.publish(t, "")
	require.Equal(t, []string{first}, receive(t, recs, 1), "the relay runs")

	// A slow producer transaction takes a smaller outbox id than a later one
	// that commits first. A relay tailing "id > last seen" would relay the later
	// row, move past the slow one's id, and never see it.
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	late := uuid.Must(uuid.NewV7())
	_, err = tx.Exec(ctx, `INSERT INTO events (id, type, key, data) VALUES ($1, 'order.created', 'k', '{}')`, late)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO outbox (event_id) VALUES ($1)`, late)
	require.NoError(t, err)
	early := b.publish(t, "k") // same key: same partition, so Kafka keeps their order

	// While the older transaction is open the newer row is held back: it is not
	// below the snapshot's xmin yet. (The relay polls every 100ms and was woken
	// by the NOTIFY; 600ms is several rounds.)
	select {
	case id := <-recs:
		t.Fatalf("relay produced %s while an older transaction could still commit a row before it", id)
	case <-time.After(600 * time.Millisecond):
	}

	require.NoError(t, tx.Commit(ctx)) // committed without NOTIFY: found by polling
	require.Equal(t, []string{late.String(), early}, receive(t, recs, 2), "both relayed, in outbox order")
	// Rows go once the broker acknowledged them, a moment after consumers see them.
	require.Eventually(t, func() bool { n, err := relay.Backlog(ctx, b.pool); return err == nil && n == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestRelayOneLeaderFailsOverInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recs := b.consumer(t)
	r1, r2 := b.startRelay(t), b.startRelay(t)
	require.Eventually(t, func() bool { return r1.Leading() != r2.Leading() }, 10*time.Second, 10*time.Millisecond, "exactly one relay leads")

	var want []string
	for i := range 50 {
		want = append(want, b.publish(t, fmt.Sprintf("k%d", i%5)))
	}
	got := receive(t, recs, 50)

	leader, standby := r1, r2
	if r2.Leading() {
		leader, standby = r2, r1
	}
	leader.Kill()
	require.Eventually(t, standby.Leading, 10*time.Second, 10*time.Millisecond, "the standby takes over")
	for i := range 50 {
		want = append(want, b.publish(t, fmt.Sprintf("k%d", i%5)))
	}
	// The killed leader may not have deleted rows Kafka had acknowledged: the
	// new leader produces them again. Those copies are allowed (the worker's
	// dedup key absorbs them); read until every event was seen.
	got = append(got, receiveAll(t, recs, want[50:])...)
	requireSameOrderPerKey(t, want, firstCopies(got), 5)
}

// receiveAll reads records until every id of want has been seen, copies and all.
func receiveAll(t *testing.T, ch <-chan string, want []string) []string {
	t.Helper()
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	var got []string
	deadline := time.After(20 * time.Second)
	for len(missing) > 0 {
		select {
		case id := <-ch:
			got = append(got, id)
			delete(missing, id)
		case <-deadline:
			t.Fatalf("%d events never arrived", len(missing))
		}
	}
	return got
}

// firstCopies keeps the first copy of each id, in order: what a consumer that
// deduplicates sees.
func firstCopies(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// requireSameOrderPerKey checks that got holds want and that events published
// for one key (round robin over keys) keep their order.
func requireSameOrderPerKey(t *testing.T, want, got []string, keys int) {
	t.Helper()
	require.ElementsMatch(t, want, got)
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	for k := range keys {
		prev := -1
		for i := k; i < len(want); i += keys {
			require.Greater(t, pos[want[i]], prev, "key %d out of order", k)
			prev = pos[want[i]]
		}
	}
}

func TestRelayKeepsRowsWhileKafkaRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var refuse atomic.Bool
	refuse.Store(true)
	c := b.emb.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refuse.Load() {
			return nil, errors.New("injected produce failure"), true
		}
		return nil, nil, false
	})
	recs := b.consumer(t)
	b.startRelay(t)
	ids := []string{b.publish(t, "a"), b.publish(t, "a"), b.publish(t, "b")}

	// While produce fails the rows stay; the relay keeps retrying.
	time.Sleep(1500 * time.Millisecond) // longer than ProduceTimeout: at least one batch failed
	n, err := relay.Backlog(ctx, b.pool)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)

	refuse.Store(false)
	got := firstCopies(receiveAll(t, recs, ids)) // a failed batch may have been partly written
	require.ElementsMatch(t, ids, got)
	require.Eventually(t, func() bool { n, _ := relay.Backlog(ctx, b.pool); return n == 0 }, 10*time.Second, 20*time.Millisecond)
}

func testLogger() *slog.Logger {
	if os.Getenv("ECS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return logging.Discard()
}

// A backlog older than the produce timeout (the relay was down for a while) must
// still be relayed.
func TestRelayDrainsAnOldBacklog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	recs := b.consumer(t)
	var want []string
	for range 20 {
		want = append(want, b.publish(t, "k"))
	}
	_, err := b.pool.Exec(ctx, `UPDATE events SET created_at = now() - interval '3 hours'`)
	require.NoError(t, err)
	b.startRelay(t) // ProduceTimeout is 1s
	require.Equal(t, want, receive(t, recs, 20))
}

// TestRelayPipelinesBatchesInOrder: with several small batches in flight at
// once, every row is produced exactly once (no failure, so no copies), each
// key's events keep their order, and the outbox drains.
func TestRelayPipelinesBatchesInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	recs := b.consumer(t)
	var want []string
	for i := range 300 {
		want = append(want, b.publish(t, fmt.Sprintf("k%d", i%6)))
	}
	b.startRelayWith(t, relay.Config{BatchSize: 7, Pipeline: 4})
	got := receive(t, recs, len(want))
	requireSameOrderPerKey(t, want, got, 6)
	require.Eventually(t, func() bool {
		n, err := relay.Backlog(context.Background(), b.pool)
		return err == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond)
	select {
	case extra := <-recs:
		t.Fatalf("a copy of %s was produced", extra)
	case <-time.After(300 * time.Millisecond):
	}
}
