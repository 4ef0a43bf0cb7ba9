-- API keys: created through the API, shown once, stored as a SHA-256 of the key
-- (the keys are 256-bit random, so a fast hash is enough), revocable, expiring.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text        NOT NULL,
    -- The first characters of the key, so people can tell keys apart.
    prefix       text        NOT NULL,
    hash         bytea       NOT NULL UNIQUE,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);
