-- The delivery engine at production grade: a retry schedule, concurrency and
-- rate limits, ordered delivery, asymmetric (ed25519, "v1a") signatures, and the
-- bookkeeping that disables a subscriber that has been failing for days.
ALTER TABLE subscriptions
    -- Seconds to wait after each failed attempt; NULL: the worker's schedule.
    ADD COLUMN retry_schedule        int[],
    -- Most attempts in flight at once; NULL: the worker's lanes (ECS_WORKER_LANES).
    ADD COLUMN max_concurrency       int,
    -- Most requests per second; NULL: unlimited.
    ADD COLUMN rate_limit            int,
    -- 'ordered': a delivery waits until the earlier deliveries of its event key
    -- to this subscription have succeeded or died.
    ADD COLUMN ordering              text        NOT NULL DEFAULT 'unordered'
        CHECK (ordering IN ('unordered', 'ordered')),
    -- Which Standard Webhooks signatures to send: v1 (HMAC-SHA256), v1a (ed25519).
    ADD COLUMN signature_schemes     text[]      NOT NULL DEFAULT '{v1}',
    -- The ed25519 signing key ("whsk_" + base64 of the 64-byte private key), and
    -- during a rotation the previous one (it signs until previous_secret_until).
    ADD COLUMN signing_key           text,
    ADD COLUMN previous_signing_key  text,
    -- Start of the current run of failed attempts (NULL after a success). When it
    -- is older than ECS_WORKER_DISABLE_AFTER the subscription is disabled.
    ADD COLUMN failing_since         timestamptz,
    ADD COLUMN disabled_at           timestamptz;

UPDATE subscriptions SET disabled_at = updated_at WHERE state = 'disabled';

-- An ordered subscription's delivery waits for the pending deliveries before it
-- with the same key: the event's key and key_seq, copied here so the check is one
-- index probe.
ALTER TABLE deliveries
    ADD COLUMN order_key text,
    ADD COLUMN order_seq bigint;

UPDATE deliveries d SET order_key = e.key, order_seq = e.key_seq
FROM events e WHERE e.id = d.event_id AND e.key IS NOT NULL;

CREATE INDEX deliveries_order_idx ON deliveries (subscription_id, order_key, order_seq)
    WHERE status = 'pending' AND order_key IS NOT NULL;
