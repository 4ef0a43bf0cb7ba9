-- Every change made through the management API, written in the same
-- transaction as the change. Secrets never reach it.
CREATE TABLE audit_log (
    -- A sequence, not a UUIDv7: entries of one millisecond keep their order.
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL,
    action        text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   text        NOT NULL,
    before        jsonb,
    after         jsonb,
    request_id    text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_resource_idx ON audit_log (resource_type, resource_id, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
