-- Queries of package delivery: subscriptions and the delivery log.

-- name: create_subscription
INSERT INTO subscriptions (id, url, event_types, description, secret, state, disabled_reason, metadata, headers, timeout_ms,
                           filter, retry_max_attempts, retry_max_age_seconds, retry_schedule, max_concurrency, rate_limit,
                           ordering, signature_schemes, signing_key, disabled_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        CASE WHEN $6 = 'disabled' THEN now() END)
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds,
          retry_schedule, max_concurrency, rate_limit, ordering, signature_schemes, signing_key, failing_since, disabled_at;

-- name: list_subscriptions
-- Oldest first by time-ordered id; $1 is the last id of the previous page.
SELECT id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
       previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds,
       retry_schedule, max_concurrency, rate_limit, ordering, signature_schemes, signing_key, failing_since, disabled_at
FROM subscriptions
WHERE deleted_at IS NULL
  AND ($1::uuid IS NULL OR id > $1)
  AND ($2::text IS NULL OR state = $2)
ORDER BY id
LIMIT $3;

-- name: get_subscription
SELECT id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
       previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds,
       retry_schedule, max_concurrency, rate_limit, ordering, signature_schemes, signing_key, failing_since, disabled_at
FROM subscriptions WHERE id = $1 AND deleted_at IS NULL;

-- name: update_subscription
-- $10 is the version the caller read; every change bumps it. disabled_at keeps
-- when the subscription was disabled; leaving that state clears it, and
-- re-activating clears the run of failures that may have disabled it. $19 is a
-- fresh signing key, taken only by a subscription created before v1a existed.
UPDATE subscriptions
SET url = $2, event_types = $3, description = $4, state = $5, disabled_reason = $6,
    metadata = $7, headers = $8, timeout_ms = $9, filter = $11, retry_max_attempts = $12,
    retry_max_age_seconds = $13, retry_schedule = $14, max_concurrency = $15, rate_limit = $16,
    ordering = $17, signature_schemes = $18, signing_key = coalesce(signing_key, $19),
    disabled_at = CASE WHEN $5 <> 'disabled' THEN NULL WHEN state = 'disabled' THEN disabled_at ELSE now() END,
    failing_since = CASE WHEN $5 = 'active' AND state <> 'active' THEN NULL ELSE failing_since END,
    version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND version = $10
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds,
          retry_schedule, max_concurrency, rate_limit, ordering, signature_schemes, signing_key, failing_since, disabled_at;

-- name: rotate_secret
-- The old secret and signing key keep signing (beside the new ones) until $3.
UPDATE subscriptions
SET previous_secret = secret, previous_secret_until = $3, secret = $2,
    previous_signing_key = signing_key, signing_key = $4, version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds,
          retry_schedule, max_concurrency, rate_limit, ordering, signature_schemes, signing_key, failing_since, disabled_at;

-- name: delete_subscription
-- Soft delete: the delivery log keeps its history; pending deliveries are
-- cancelled. Answers how many subscriptions it deleted (0 or 1).
WITH s AS (
    UPDATE subscriptions SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING id
), d AS (
    UPDATE deliveries SET status = 'cancelled', owner = NULL, updated_at = now()
    WHERE subscription_id IN (SELECT id FROM s) AND status = 'pending'
)
SELECT count(*) FROM s;

-- name: list_deliveries
-- Newest first by time-ordered id; $6 is the last id of the previous page.
SELECT id, subscription_id, event_id, status, attempts, next_attempt_at, last_error, created_at, updated_at
FROM deliveries
WHERE ($1::uuid IS NULL OR event_id = $1)
  AND ($2::uuid IS NULL OR subscription_id = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::uuid IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $7;

-- name: get_delivery
SELECT id, subscription_id, event_id, status, attempts, next_attempt_at, last_error, created_at, updated_at
FROM deliveries WHERE id = $1;

-- name: retry_delivery
-- A dead or succeeded delivery, or a pending one no worker holds, becomes due
-- now and free for any worker's poller. One held by a worker is in flight, and
-- a cancelled one's subscription is gone: those are left alone.
UPDATE deliveries
SET status = 'pending', next_attempt_at = now(), owner = NULL, updated_at = now()
WHERE id = $1 AND (status IN ('dead', 'succeeded') OR (status = 'pending' AND owner IS NULL))
RETURNING id;

-- name: list_attempts
SELECT delivery_id, attempt, started_at, latency_us, status_code, error, response_body, succeeded
FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt;

-- name: event_delivery_states
-- Per live subscription that wants the event (the worker's matching rule), its
-- delivery, if the worker got to it yet; then deliveries to subscriptions deleted
-- since.
SELECT s.id, s.url, d.id, d.status, d.attempts, d.next_attempt_at, d.last_error, d.updated_at
FROM events e
JOIN subscriptions s ON ecs_type_matches(e.type, s.event_types) AND s.created_at <= e.created_at
                    AND s.deleted_at IS NULL
LEFT JOIN deliveries d ON d.subscription_id = s.id AND d.event_id = e.id
WHERE e.id = $1
UNION ALL
SELECT s.id, s.url, d.id, d.status, d.attempts, d.next_attempt_at, d.last_error, d.updated_at
FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.event_id = $1 AND s.deleted_at IS NOT NULL
ORDER BY 1;

-- name: replay_existing
-- Re-send a subscription's deliveries of events accepted in [$2, $3): all of
-- them, or only the dead ones ($4). Deliveries held by a worker are in flight
-- and left alone.
UPDATE deliveries d
SET status = 'pending', next_attempt_at = now(), owner = NULL, updated_at = now()
FROM events e
WHERE d.subscription_id = $1 AND e.id = d.event_id
  AND e.created_at >= $2 AND e.created_at < $3
  AND d.owner IS NULL
  AND d.status <> 'cancelled'
  AND (NOT $4 OR d.status = 'dead');

-- name: replay_missing
-- Events of the window the subscription wants but never got a delivery for
-- (it was disabled, or created later): create them, due now.
INSERT INTO deliveries (subscription_id, event_id, order_key, order_seq)
SELECT s.id, e.id, e.key, e.key_seq
FROM subscriptions s
JOIN events e ON ecs_type_matches(e.type, s.event_types)
WHERE s.id = $1 AND s.deleted_at IS NULL
  AND e.created_at >= $2 AND e.created_at < $3
ON CONFLICT ON CONSTRAINT deliveries_dedup_key DO NOTHING;

-- name: replay_candidates
-- What replay_missing would create, for a subscription with a filter: the
-- worker's CEL filter is evaluated in Go before the deliveries are created.
SELECT e.id, e.type, coalesce(e.key, ''), e.data::text
FROM subscriptions s
JOIN events e ON ecs_type_matches(e.type, s.event_types)
WHERE s.id = $1 AND s.deleted_at IS NULL
  AND e.created_at >= $2 AND e.created_at < $3
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id AND d.event_id = e.id)
ORDER BY e.id;

-- name: replay_create
-- The deliveries of filtered candidates that passed, due now.
INSERT INTO deliveries (subscription_id, event_id, order_key, order_seq)
SELECT $1, e.id, e.key, e.key_seq FROM events e WHERE e.id = ANY ($2)
ON CONFLICT ON CONSTRAINT deliveries_dedup_key DO NOTHING;

-- name: redrive_dead
-- Dead deliveries (optionally of one subscription, created in a window) become
-- due again, keeping their ids and so their webhook-ids.
UPDATE deliveries
SET status = 'pending', next_attempt_at = now(), owner = NULL, updated_at = now()
WHERE status = 'dead'
  AND ($1::uuid IS NULL OR subscription_id = $1)
  AND ($2::timestamptz IS NULL OR created_at >= $2)
  AND ($3::timestamptz IS NULL OR created_at < $3);

-- name: signing_secrets
SELECT secret, CASE WHEN previous_secret_until > now() THEN previous_secret END,
       signing_key, CASE WHEN previous_secret_until > now() THEN previous_signing_key END, signature_schemes
FROM subscriptions WHERE id = $1 AND deleted_at IS NULL;

-- name: ensure_signing_key
-- A subscription created before v1a existed gets its signing key ($2) on first
-- use; one that has a key keeps it.
UPDATE subscriptions
SET signing_key = coalesce(signing_key, $2),
    version = version + CASE WHEN signing_key IS NULL THEN 1 ELSE 0 END
WHERE id = $1 AND deleted_at IS NULL
RETURNING signing_key;
