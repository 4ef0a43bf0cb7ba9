-- The event catalog grows up: an optional JSON Schema per type, examples, an
-- enabled flag, archiving, and a version for optimistic concurrency (ETag).

ALTER TABLE event_types
    ADD COLUMN schema      jsonb,
    ADD COLUMN examples    jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN enabled     bool        NOT NULL DEFAULT true,
    ADD COLUMN archived_at timestamptz,
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN version     int         NOT NULL DEFAULT 1;

-- ecs_check_event_type fails the calling transaction with SQLSTATE EC001 when the
-- event type is not at the version the API validated the event against. The API
-- caches types (and compiled schemas); this check, sent in the same pipeline as
-- the insert, makes a stale cache cost a retry instead of a wrong validation.
CREATE FUNCTION ecs_check_event_type(p_name text, p_version int) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM event_types WHERE name = p_name AND version = p_version) THEN
        RAISE EXCEPTION 'event type % is no longer at version %', p_name, p_version USING ERRCODE = 'EC001';
    END IF;
END
$$;
