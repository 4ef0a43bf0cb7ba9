-- Queries of package delivery: subscriptions and the delivery log.

-- name: create_subscription
INSERT INTO subscriptions (id, url, event_types, description, secret, state, disabled_reason, metadata, headers, timeout_ms,
                           filter, retry_max_attempts, retry_max_age_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds;

-- name: list_subscriptions
SELECT id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
       previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds
FROM subscriptions WHERE deleted_at IS NULL ORDER BY id;

-- name: get_subscription
SELECT id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
       previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds
FROM subscriptions WHERE id = $1 AND deleted_at IS NULL;

-- name: update_subscription
-- $11 is the version the caller read; every change bumps it.
UPDATE subscriptions
SET url = $2, event_types = $3, description = $4, state = $5, disabled_reason = $6,
    metadata = $7, headers = $8, timeout_ms = $9, filter = $11, retry_max_attempts = $12,
    retry_max_age_seconds = $13, version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND version = $10
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds;

-- name: rotate_secret
-- The old secret keeps signing (beside the new one) until $3.
UPDATE subscriptions
SET previous_secret = secret, previous_secret_until = $3, secret = $2, version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, url, event_types, description, state, disabled_reason, metadata, headers, timeout_ms,
          previous_secret_until, version, created_at, updated_at, filter, retry_max_attempts, retry_max_age_seconds;

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
INSERT INTO deliveries (subscription_id, event_id)
SELECT s.id, e.id
FROM subscriptions s
JOIN events e ON ecs_type_matches(e.type, s.event_types)
WHERE s.id = $1 AND s.deleted_at IS NULL
  AND e.created_at >= $2 AND e.created_at < $3
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
SELECT secret, CASE WHEN previous_secret_until > now() THEN previous_secret END
FROM subscriptions WHERE id = $1 AND deleted_at IS NULL;
