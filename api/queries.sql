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

-- name: get_api_key
SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys WHERE id = $1;

-- name: insert_audit
INSERT INTO audit_log (actor, action, resource_type, resource_id, before, after, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: list_audit
-- Newest first; $7 is the last id of the previous page.
SELECT id, at, actor, action, resource_type, resource_id, before, after, request_id
FROM audit_log
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR resource_type = $3)
  AND ($4::text IS NULL OR resource_id = $4)
  AND ($5::timestamptz IS NULL OR at >= $5)
  AND ($6::timestamptz IS NULL OR at < $6)
  AND ($7::bigint IS NULL OR id < $7)
ORDER BY id DESC
LIMIT $8;
