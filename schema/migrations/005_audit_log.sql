-- Every change made through the management API, written in the same
-- transaction as the change. Secrets never reach it.
CREATE TABLE audit_log (
    id            uuid PRIMARY KEY DEFAULT ecs_uuidv7(),
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
