-- The first schema of EventConfigService: the event catalog, subscriptions, the
-- transactional outbox and the delivery log.

-- ecs_uuidv7 returns a time-ordered UUID (RFC 9562 version 7). Rows created by SQL
-- (deliveries) get ids that index as well as the UUIDv7 ids Go creates for events.
CREATE FUNCTION ecs_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;

CREATE TABLE event_types (
    name        text PRIMARY KEY,
    description text        NOT NULL DEFAULT '',
    topic       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id          uuid PRIMARY KEY,
    url         text        NOT NULL,
    event_types text[]      NOT NULL,
    description text        NOT NULL DEFAULT '',
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Deleted subscriptions are kept so the delivery log keeps its history.
    deleted_at  timestamptz
);
CREATE INDEX subscriptions_event_types_idx ON subscriptions USING gin (event_types);

CREATE TABLE events (
    id         uuid PRIMARY KEY,
    type       text        NOT NULL REFERENCES event_types (name),
    key        text,
    -- Position of the event among the events of its key: 1, 2, 3, ... with no gaps,
    -- in commit order. The worker uses it to deliver a key's events in order even
    -- though events of different types travel through different topics.
    key_seq    bigint,
    -- json, not jsonb: subscribers receive the payload byte for byte as accepted
    -- (compacted), with the producer's key order.
    data       json        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The last key_seq handed out per key. Its row lock serialises the writers of one
-- key, so key_seq order is commit order.
CREATE TABLE key_sequences (
    key text PRIMARY KEY,
    seq bigint NOT NULL
);

-- The last key_seq per key whose event the worker has turned into deliveries.
CREATE TABLE key_progress (
    key text PRIMARY KEY,
    seq bigint NOT NULL
);

CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    request_hash bytea       NOT NULL,
    -- Checked at commit: the record is written before its event, so that a
    -- concurrent retry of the same key waits on it.
    event_id     uuid        NOT NULL REFERENCES events (id) DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per accepted event until the broker has acknowledged it.
-- xid is the writing transaction's id; the relay reads only rows whose transaction
-- is older than its snapshot's xmin, so a row committed late is never skipped.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid        NOT NULL,
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Worker processes, so that a delivery held by a dead worker can be taken over.
CREATE TABLE workers (
    id           uuid PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    id              uuid PRIMARY KEY DEFAULT ecs_uuidv7(),
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id),
    event_id        uuid        NOT NULL REFERENCES events (id),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'dead', 'cancelled')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The worker holding the delivery in memory; NULL when any worker may claim it.
    owner           uuid,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The per-subscriber dedup key: a redelivered Kafka record or a re-produced
    -- outbox row can never create a second delivery.
    CONSTRAINT deliveries_dedup_key UNIQUE (subscription_id, event_id)
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
CREATE INDEX deliveries_status_idx ON deliveries (status, created_at);

CREATE TABLE delivery_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   uuid        NOT NULL REFERENCES deliveries (id),
    attempt       int         NOT NULL,
    started_at    timestamptz NOT NULL,
    latency_us    bigint      NOT NULL,
    status_code   int,
    error         text,
    -- The first KiB of the response body.
    response_body text,
    succeeded     bool        NOT NULL
);
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id);
