-- Queries of package api: API keys.

-- name: create_api_key
INSERT INTO api_keys (id, name, prefix, hash, scopes, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING created_at;

-- name: find_api_key
-- A usable key: not revoked, not expired.
SELECT id, name, scopes FROM api_keys
WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());

-- name: list_api_keys
SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id;
