-- Queries of package outbox: the event catalog and the transactional write.

-- name: create_event_type
INSERT INTO event_types (name, description, topic, schema, examples, enabled)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING name, description, topic, schema, examples, enabled, archived_at, version, created_at, updated_at;

-- name: list_event_types
-- Keyset pagination by name: $1 is the last name of the previous page ('' first).
SELECT name, description, topic, schema, examples, enabled, archived_at, version, created_at, updated_at
FROM event_types
WHERE name > $1 AND ($2 OR archived_at IS NULL)
ORDER BY name
LIMIT $3;

-- name: get_event_type
SELECT name, description, topic, schema, examples, enabled, archived_at, version, created_at, updated_at
FROM event_types WHERE name = $1;

-- name: update_event_type
-- $8 is the version the caller read (NULL: any). Every change bumps version.
UPDATE event_types
SET description = $2, schema = $3, examples = $4, enabled = $5,
    archived_at = CASE WHEN $6 THEN coalesce(archived_at, now()) ELSE NULL END,
    version = version + 1, updated_at = now()
WHERE name = $1 AND ($7::int IS NULL OR version = $7)
RETURNING name, description, topic, schema, examples, enabled, archived_at, version, created_at, updated_at;

-- name: check_event_type
SELECT ecs_check_event_type($1, $2);

-- name: claim_idempotency_key
-- Sent in one pipeline (one implicit transaction) before publish_* below. If the
-- key exists, this inserts nothing (after waiting for a concurrent writer of the
-- same key to commit or roll back) and the statements after it do nothing.
INSERT INTO idempotency_keys (key, request_hash, event_id)
VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING;

-- name: next_key_seq
-- $2 is the idempotency key or NULL. The row lock on the event key is held to
-- commit, so writers of one key take turns and key_seq order is commit order.
INSERT INTO key_sequences (key, seq)
SELECT $1, 1
WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys WHERE key = $2 AND event_id = $3)
ON CONFLICT (key) DO UPDATE SET seq = key_sequences.seq + 1;

-- name: publish
-- The event and its outbox row commit together or not at all; the relay's
-- wake-up follows the commit (notify, sent by the waker in wake.go). The outbox
-- id is drawn after next_key_seq took the key's lock, so for one key outbox
-- order is key_seq order too.
WITH e AS (
    INSERT INTO events (id, type, key, key_seq, data)
    SELECT $1, $2, $3, (SELECT seq FROM key_sequences WHERE key = $3), $4::json
    WHERE $5::text IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys WHERE key = $5 AND event_id = $1)
    RETURNING id, created_at, key_seq
), o AS (
    INSERT INTO outbox (event_id) SELECT id FROM e
)
SELECT created_at, key_seq FROM e;

-- name: get_idempotent
SELECT k.request_hash, e.id, e.type, e.key, e.key_seq, e.data::text, e.created_at
FROM idempotency_keys k JOIN events e ON e.id = k.event_id
WHERE k.key = $1;

-- name: get_event
SELECT id, type, key, key_seq, data::text, created_at FROM events WHERE id = $1;

-- name: event_types_named
SELECT name, description, topic, schema, examples, enabled, archived_at, version, created_at, updated_at
FROM event_types WHERE name = ANY ($1);

-- The batch write: one pipeline, one implicit transaction, set-based statements.
-- Items whose idempotency key another event already holds are left out of every
-- step after batch_claim_idempotency (their ids are not in idempotency_keys).

-- name: batch_check_event_types
SELECT ecs_check_event_type(n, v) FROM unnest($1::text[], $2::int[]) AS t(n, v);

-- name: batch_claim_idempotency
INSERT INTO idempotency_keys (key, request_hash, event_id)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::uuid[])
ON CONFLICT (key) DO NOTHING;

-- name: batch_next_key_seqs
-- Locks keys in key order, so two concurrent batches cannot deadlock.
INSERT INTO key_sequences (key, seq)
SELECT t.key, count(*)
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, key, idem)
WHERE t.key IS NOT NULL
  AND (t.idem IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.key = t.idem AND k.event_id = t.id))
GROUP BY t.key
ORDER BY t.key
ON CONFLICT (key) DO UPDATE SET seq = key_sequences.seq + EXCLUDED.seq;

-- name: batch_insert_events
-- key_seq: the key's new last number, minus the batch's events of that key, plus
-- the event's rank among them.
WITH t AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(id, type, key, data, idem, ord)
    WHERE t.idem IS NULL OR EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.key = t.idem AND k.event_id = t.id)
), n AS (
    SELECT t.*, count(*) OVER (PARTITION BY t.key) AS cnt, row_number() OVER (PARTITION BY t.key ORDER BY t.ord) AS rn
    FROM t
)
INSERT INTO events (id, type, key, key_seq, data)
SELECT id, type, key,
       CASE WHEN key IS NULL THEN NULL ELSE (SELECT seq FROM key_sequences ks WHERE ks.key = n.key) - cnt + rn END,
       data::json
FROM n ORDER BY ord
RETURNING id, created_at, key_seq;

-- name: batch_insert_outbox
-- In input order, so outbox order is acceptance order within the batch.
INSERT INTO outbox (event_id)
SELECT t.id FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, ord)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.id = t.id)
ORDER BY t.ord;

-- name: notify
-- Wakes the relay, in a transaction of its own after events committed, never
-- inside theirs (see wake.go). A transaction that only notifies writes no WAL.
SELECT pg_notify('ecs_outbox', '');

-- name: get_idempotent_many
SELECT k.key, k.request_hash, e.id, e.type, e.key, e.key_seq, e.data::text, e.created_at
FROM idempotency_keys k JOIN events e ON e.id = k.event_id
WHERE k.key = ANY ($1);

-- name: list_events
-- Newest first; ids are UUIDv7, so id order is time order. $5 is the last id of
-- the previous page.
SELECT id, type, key, key_seq, data::text, created_at
FROM events
WHERE ($1::text IS NULL OR type = $1)
  AND ($2::text IS NULL OR key = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
  AND ($5::uuid IS NULL OR id < $5)
ORDER BY id DESC
LIMIT $6;
