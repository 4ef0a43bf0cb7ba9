-- Queries of package outbox: the event catalog and the transactional write.

-- name: create_event_type
INSERT INTO event_types (name, description, topic)
VALUES ($1, $2, $3)
RETURNING name, description, topic, created_at;

-- name: list_event_types
SELECT name, description, topic, created_at FROM event_types ORDER BY name;

-- name: get_event_type
SELECT name, description, topic, created_at FROM event_types WHERE name = $1;

-- name: publish
-- One statement, so one implicit transaction and one round trip: the event, its
-- outbox row and the wake-up for the relay commit together or not at all.
WITH e AS (
    INSERT INTO events (id, type, key, data)
    VALUES ($1, $2, $3, $4::json)
    RETURNING id, created_at
), o AS (
    INSERT INTO outbox (event_id) SELECT id FROM e
)
SELECT created_at, pg_notify('ecs_outbox', '') FROM e;

-- name: publish_idempotent
-- As publish, guarded by the idempotency record: if the key exists, the insert into
-- idempotency_keys yields nothing (after waiting for a concurrent writer of the same
-- key to commit or roll back) and so do the event and outbox inserts.
WITH i AS (
    INSERT INTO idempotency_keys (key, request_hash, event_id)
    VALUES ($5, $6, $1)
    ON CONFLICT (key) DO NOTHING
    RETURNING event_id
), e AS (
    INSERT INTO events (id, type, key, data)
    SELECT $1, $2, $3, $4::json FROM i
    RETURNING id, created_at
), o AS (
    INSERT INTO outbox (event_id) SELECT id FROM e
)
SELECT created_at, pg_notify('ecs_outbox', '') FROM e;

-- name: get_idempotent
SELECT k.request_hash, e.id, e.type, e.key, e.data::text, e.created_at
FROM idempotency_keys k JOIN events e ON e.id = k.event_id
WHERE k.key = $1;

-- name: get_event
SELECT id, type, key, data::text, created_at FROM events WHERE id = $1;
