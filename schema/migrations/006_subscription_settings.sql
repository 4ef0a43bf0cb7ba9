-- Subscriptions grow up: a state, metadata, custom headers, a timeout, secret
-- rotation with an overlap, wildcard event types, and a version (ETag).
ALTER TABLE subscriptions
    ADD COLUMN state                 text        NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'paused', 'disabled')),
    ADD COLUMN disabled_reason       text,
    ADD COLUMN metadata              jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN headers               jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN timeout_ms            int,
    ADD COLUMN previous_secret       text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD COLUMN version               int         NOT NULL DEFAULT 1,
    ADD COLUMN updated_at            timestamptz NOT NULL DEFAULT now();

-- ecs_type_matches says whether an event type is wanted by a subscription's
-- list: exact names, "prefix.*" (every type under prefix, at any depth) and "*".
CREATE FUNCTION ecs_type_matches(t text, patterns text[]) RETURNS bool
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1 FROM unnest(patterns) p
        WHERE p = t OR p = '*'
           OR (right(p, 2) = '.*' AND left(t, length(p) - 1) = left(p, length(p) - 1))
    )
$$;
