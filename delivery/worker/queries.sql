-- Queries of package worker.

-- name: register
INSERT INTO workers (id) VALUES ($1)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: heartbeat
UPDATE workers SET heartbeat_at = now() WHERE id = $1;

-- name: forget_dead_workers
DELETE FROM workers WHERE heartbeat_at < now() - $1::interval;

-- name: unregister
DELETE FROM workers WHERE id = $1;

-- name: create_deliveries
-- Match each consumed event to the subscriptions that want its type and existed
-- when it was accepted, and create one delivery per pair, held by this worker.
-- Pairs ($3, $4) whose subscription filter said no are left out.
-- ON CONFLICT on the dedup key makes a redelivered record or a re-produced outbox
-- row a no-op: only new deliveries come back, so only they are sent.
WITH ins AS (
    INSERT INTO deliveries (subscription_id, event_id, owner)
    SELECT s.id, e.id, $2
    FROM events e
    JOIN subscriptions s ON ecs_type_matches(e.type, s.event_types)
                        AND s.created_at <= e.created_at
                        AND s.deleted_at IS NULL
                        AND s.state <> 'disabled'
    WHERE e.id = ANY ($1)
      AND NOT EXISTS (SELECT 1 FROM unnest($3::uuid[], $4::uuid[]) AS x(sid, eid) WHERE x.sid = s.id AND x.eid = e.id)
    ORDER BY e.id, s.id
    ON CONFLICT ON CONSTRAINT deliveries_dedup_key DO NOTHING
    RETURNING id, subscription_id, event_id, created_at
)
SELECT ins.id, ins.subscription_id, ins.event_id, s.url, s.secret,
       CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END,
       s.headers, s.timeout_ms, s.state, ins.created_at, s.retry_max_attempts, s.retry_max_age_seconds
FROM ins JOIN subscriptions s ON s.id = ins.subscription_id;

-- name: release
-- Hand deliveries back so any worker's poller may claim them.
UPDATE deliveries SET owner = NULL, updated_at = now()
WHERE id = ANY ($1) AND owner = $2 AND status = 'pending';

-- name: claim_due
-- Due deliveries nobody holds, or held by a worker whose heartbeat went stale
-- (it died holding them), of active subscriptions (paused and disabled ones wait;
-- deleted ones are claimed to be cancelled). SKIP LOCKED lets pollers of several
-- workers run at once.
WITH c AS (
    UPDATE deliveries d SET owner = $1, updated_at = now()
    FROM (
        SELECT d2.id FROM deliveries d2
        WHERE d2.status = 'pending' AND d2.next_attempt_at <= now()
          AND (d2.owner IS NULL OR NOT EXISTS (
                SELECT 1 FROM workers w
                WHERE w.id = d2.owner AND w.heartbeat_at > now() - $2::interval))
          AND EXISTS (SELECT 1 FROM subscriptions s
                      WHERE s.id = d2.subscription_id AND (s.state = 'active' OR s.deleted_at IS NOT NULL))
        ORDER BY d2.next_attempt_at, d2.id
        LIMIT $3
        FOR UPDATE OF d2 SKIP LOCKED
    ) due
    WHERE d.id = due.id
    RETURNING d.id, d.subscription_id, d.event_id, d.attempts, d.created_at
)
SELECT c.id, c.subscription_id, c.event_id, c.attempts, s.url, s.secret,
       CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END, s.headers, s.timeout_ms,
       c.created_at, s.retry_max_attempts, s.retry_max_age_seconds,
       e.type, coalesce(e.key, e.id::text), e.data::text, e.created_at, s.deleted_at IS NOT NULL
FROM c
JOIN subscriptions s ON s.id = c.subscription_id
JOIN events e ON e.id = c.event_id
ORDER BY e.created_at, e.id;

-- name: finish_attempt
-- Record one attempt and the delivery's new state together. The owner guard means
-- a worker that lost a delivery to another (its heartbeat went stale) cannot
-- overwrite the new holder's state; the attempt is logged either way.
WITH d AS (
    UPDATE deliveries
    SET status = $2, attempts = $3, next_attempt_at = $4, last_error = $5,
        owner = NULL, updated_at = now()
    WHERE id = $1 AND owner = $6
    RETURNING id
), a AS (
    INSERT INTO delivery_attempts
        (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, succeeded)
    VALUES ($1, $3, $7, $8, $9, $5, $10, $11)
)
SELECT count(*) FROM d;

-- name: cancel
UPDATE deliveries SET status = 'cancelled', owner = NULL, updated_at = now()
WHERE id = $1 AND owner = $2 AND status = 'pending';

-- name: listen_topics
LISTEN ecs_topics;

-- name: load_progress
SELECT key, seq FROM key_progress WHERE key = ANY ($1);

-- name: save_progress
-- Keys arrive sorted, so two workers saving overlapping keys lock them in the
-- same order and cannot deadlock.
INSERT INTO key_progress (key, seq)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (key) DO UPDATE SET seq = GREATEST(key_progress.seq, EXCLUDED.seq);

-- name: filtered_subscriptions
SELECT id, event_types, filter FROM subscriptions
WHERE filter IS NOT NULL AND deleted_at IS NULL AND state <> 'disabled';

-- name: disable_subscription
UPDATE subscriptions
SET state = 'disabled', disabled_reason = $2, version = version + 1, updated_at = now()
WHERE id = $1 AND state <> 'disabled';
