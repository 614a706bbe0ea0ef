-- Registering users (`etl users add | import | list`).

-- name: free_handle_for_new_user
-- A new user's handle may still sit on a row whose account has moved away from it: that row
-- gives way (its DID as a placeholder, as in the run's merge). Existing users are left alone.
UPDATE users SET handle = did, updated_at = now()
WHERE handle = %(handle)s AND did <> %(did)s
  AND NOT EXISTS (SELECT 1 FROM users WHERE did = %(did)s)

-- name: insert_user
-- A user resolved through the AppView; an existing DID is left as it is.
INSERT INTO users (did, handle, "displayName", avatar)
VALUES (%(did)s, %(handle)s, %(display_name)s, %(avatar)s)
ON CONFLICT (did) DO NOTHING
RETURNING did

-- name: list_users
-- Registered users with their last snapshot, for `etl users list`.
SELECT u.did, u.handle, u."displayName", COALESCE(u.account_status, '') AS account_status,
       COALESCE(u.skip_user, FALSE) AS skip_user, s.date AS last_snapshot, s.followers
FROM users u
LEFT JOIN LATERAL (
    SELECT date, followers FROM snapshots WHERE did = u.did ORDER BY date DESC LIMIT 1
) s ON TRUE
WHERE %(pattern)s::text IS NULL OR u.handle ILIKE %(pattern)s OR u.did = %(exact)s
ORDER BY u.handle
LIMIT %(limit)s

-- name: count_users
SELECT count(*) AS users FROM users
