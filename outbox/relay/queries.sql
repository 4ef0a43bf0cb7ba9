-- Queries of package relay.

-- name: try_lead
-- A session-level advisory lock makes one relay the leader per database. Only the
-- leader produces, so events with the same key reach Kafka in the order they were
-- accepted even when several relay processes run; the others are hot standbys.
SELECT pg_try_advisory_lock(7306916202493436281);

-- name: listen
LISTEN ecs_outbox;

-- name: claim
-- Rows whose writing transaction is older than this snapshot's xmin: every
-- transaction that could still add a row with a smaller id has ended, so nothing
-- that commits late is skipped (a high-water mark on id would skip it). $2 are
-- the rows of the batches still in flight.
SELECT o.id, e.id, e.type, e.key, e.key_seq, e.data::text, e.created_at, t.topic
FROM outbox o
JOIN events e ON e.id = o.event_id
JOIN event_types t ON t.name = e.type
WHERE o.xid < pg_snapshot_xmin(pg_current_snapshot())
  AND o.id NOT IN (SELECT unnest($2::bigint[])) -- a hashed subplan: one probe per row
ORDER BY o.id
LIMIT $1;

-- name: remove
DELETE FROM outbox WHERE id = ANY($1);

-- name: async_commit
-- The relay's deletes need not wait for the WAL flush: if PostgreSQL crashes
-- before it, the rows come back and are produced again, and the worker's dedup
-- key absorbs the copies, as after a relay crash.
SELECT set_config('synchronous_commit', 'off', true);

-- name: backlog
SELECT count(*) FROM outbox;

-- name: notify_topics
SELECT pg_notify('ecs_topics', '');
