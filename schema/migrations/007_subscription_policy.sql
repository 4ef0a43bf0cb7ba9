-- Per-subscription delivery policy: a CEL filter over the payload, evaluated
-- before a delivery is created, and a retry policy (attempts, maximum age).
ALTER TABLE subscriptions
    ADD COLUMN filter                text,
    ADD COLUMN retry_max_attempts    int,
    ADD COLUMN retry_max_age_seconds int;
