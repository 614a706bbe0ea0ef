-- What `etl demo` and the end-to-end tests read back to compare with the simulator's truth.

-- name: verify_snapshots
SELECT did, date, followers, following, posts, likes, replies, quotes, reposts
FROM snapshots WHERE did = ANY(%(dids)s) AND date = ANY(%(dates)s)

-- name: verify_posts
SELECT uri, did, "createdAt", likes, replies, quotes, reposts FROM posts WHERE did = ANY(%(dids)s)

-- name: verify_users
SELECT did, handle, "displayName", avatar, account_status FROM users WHERE did = ANY(%(dids)s)

-- name: snapshot_dids
SELECT did FROM snapshots WHERE date = %(date)s
