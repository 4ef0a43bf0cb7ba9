-- Queries of package worker.

-- name: register
INSERT INTO workers (id) VALUES ($1)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: heartbeat
UPDATE workers SET heartbeat_at = now() WHERE id = $1;

-- name: live_workers
-- Workers whose heartbeat is fresh: subscriptions' limits are shared out
-- between them.
SELECT count(*) FROM workers WHERE heartbeat_at > now() - $1::interval;

-- name: forget_dead_workers
DELETE FROM workers WHERE heartbeat_at < now() - $1::interval;

-- name: unregister
DELETE FROM workers WHERE id = $1;

-- name: create_deliveries
-- Match each consumed event to the subscriptions that want its type and existed
-- when it was accepted, and create one delivery per pair, held by this worker.
-- Pairs ($3, $4) whose subscription filter said no are left out.
-- ON CONFLICT on the dedup key makes a redelivered record or a re-produced outbox
-- row a no-op: only new deliveries come back, so only they are sent. The columns
-- after the first five are the job's (see scanJob), as in claim_due.
WITH ins AS (
    INSERT INTO deliveries (subscription_id, event_id, owner, order_key, order_seq)
    SELECT s.id, e.id, $2, e.key, e.key_seq
    FROM events e
    JOIN subscriptions s ON ecs_type_matches(e.type, s.event_types)
                        AND s.created_at <= e.created_at
                        AND s.deleted_at IS NULL
                        AND s.state <> 'disabled'
    WHERE e.id = ANY ($1)
      AND NOT EXISTS (SELECT 1 FROM unnest($3::uuid[], $4::uuid[]) AS x(sid, eid) WHERE x.sid = s.id AND x.eid = e.id)
    ORDER BY e.id, s.id
    ON CONFLICT ON CONSTRAINT deliveries_dedup_key DO NOTHING
    RETURNING id, subscription_id, event_id, attempts, created_at, order_key, order_seq
)
SELECT s.state, ins.id, ins.subscription_id, ins.event_id, ins.attempts, ins.created_at, ins.order_key, ins.order_seq,
       s.url, s.secret, CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END,
       s.signing_key, CASE WHEN s.previous_secret_until > now() THEN s.previous_signing_key END, s.signature_schemes,
       s.headers, s.timeout_ms, s.retry_max_attempts, s.retry_max_age_seconds, s.retry_schedule,
       s.max_concurrency, s.rate_limit, s.ordering
FROM ins JOIN subscriptions s ON s.id = ins.subscription_id;

-- name: release
-- Hand deliveries back so any worker's poller may claim them.
UPDATE deliveries SET owner = NULL, updated_at = now()
WHERE id = ANY ($1) AND owner = $2 AND status = 'pending';

-- name: claim_due
-- Due deliveries nobody holds, or held by a worker whose heartbeat went stale
-- (it died holding them), of active subscriptions (paused and disabled ones wait;
-- deleted ones are claimed to be cancelled). A delivery of an ordered
-- subscription also waits while an earlier delivery of its key is pending. SKIP
-- LOCKED lets pollers of several workers run at once.
WITH c AS (
    UPDATE deliveries d SET owner = $1, updated_at = now()
    FROM (
        SELECT d2.id FROM deliveries d2
        JOIN subscriptions s2 ON s2.id = d2.subscription_id
        WHERE d2.status = 'pending' AND d2.next_attempt_at <= now()
          AND (d2.owner IS NULL OR NOT EXISTS (
                SELECT 1 FROM workers w
                WHERE w.id = d2.owner AND w.heartbeat_at > now() - $2::interval))
          AND (s2.state = 'active' OR s2.deleted_at IS NOT NULL)
          AND (s2.ordering = 'unordered' OR d2.order_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM deliveries p
                WHERE p.subscription_id = d2.subscription_id AND p.order_key = d2.order_key
                  AND p.order_seq < d2.order_seq AND p.status = 'pending'))
        ORDER BY d2.next_attempt_at, d2.id
        LIMIT $3
        FOR UPDATE OF d2 SKIP LOCKED
    ) due
    WHERE d.id = due.id
    RETURNING d.id, d.subscription_id, d.event_id, d.attempts, d.created_at, d.order_key, d.order_seq
)
SELECT s.deleted_at IS NOT NULL, c.id, c.subscription_id, c.event_id, c.attempts, c.created_at, c.order_key, c.order_seq,
       s.url, s.secret, CASE WHEN s.previous_secret_until > now() THEN s.previous_secret END,
       s.signing_key, CASE WHEN s.previous_secret_until > now() THEN s.previous_signing_key END, s.signature_schemes,
       s.headers, s.timeout_ms, s.retry_max_attempts, s.retry_max_age_seconds, s.retry_schedule,
       s.max_concurrency, s.rate_limit, s.ordering,
       e.type, coalesce(e.key, e.id::text), e.data::text, e.created_at
FROM c
JOIN subscriptions s ON s.id = c.subscription_id
JOIN events e ON e.id = c.event_id
ORDER BY e.created_at, e.id;

-- name: finish_attempt
-- Record one attempt and the delivery's new state together. The owner guard means
-- a worker that lost a delivery to another (its heartbeat went stale) cannot
-- overwrite the new holder's state; the attempt is logged either way. The
-- subscription's run of failures starts at its first failed attempt and ends at
-- a success; the answer carries when the run started (NULL after a success), so
-- the worker can disable a subscriber that has been failing for days.
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
), f AS (
    UPDATE subscriptions SET failing_since = CASE WHEN $11 THEN NULL ELSE $7 END
    WHERE id = $12 AND (CASE WHEN $11 THEN failing_since IS NOT NULL ELSE failing_since IS NULL END)
    RETURNING failing_since
)
SELECT (SELECT count(*) FROM d),
       CASE WHEN $11 THEN NULL
            ELSE coalesce((SELECT failing_since FROM f), (SELECT failing_since FROM subscriptions WHERE id = $12)) END;

-- name: postpone
-- Hand a delivery back without an attempt, due again at $3: its endpoint's
-- circuit breaker is open.
UPDATE deliveries SET owner = NULL, next_attempt_at = $3, last_error = $4, updated_at = now()
WHERE id = $1 AND owner = $2 AND status = 'pending';

-- name: earlier_pending
-- Whether a delivery of an ordered subscription must wait: an earlier delivery
-- of the same key to the same subscription is still pending.
SELECT EXISTS (
    SELECT 1 FROM deliveries
    WHERE subscription_id = $1 AND order_key = $2 AND order_seq < $3 AND status = 'pending');

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
-- Disable an active subscription: at once ($3, as on 410 Gone), or only if its
-- every attempt has failed since before $4. Answers nothing when it was not
-- disabled (already, or it recovered).
UPDATE subscriptions
SET state = 'disabled', disabled_reason = $2, disabled_at = now(), version = version + 1, updated_at = now()
WHERE id = $1 AND state = 'active' AND deleted_at IS NULL AND ($3 OR failing_since < $4)
RETURNING url, failing_since, disabled_at;

-- name: audit_disable
-- The audit trail shows who disabled a subscription: here, the worker.
INSERT INTO audit_log (actor, action, resource_type, resource_id, after)
VALUES ('system:worker', 'subscription.disable', 'subscription', $1, $2);
