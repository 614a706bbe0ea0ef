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

-- name: registered_users
SELECT did, handle FROM users ORDER BY did

-- name: demo_top_snapshots
-- The snapshots of the three users with the most posts on %(date)s, every day.
SELECT u.handle, s.date, s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts
FROM snapshots s
JOIN users u USING (did)
WHERE s.did IN (SELECT did FROM snapshots WHERE date = %(date)s ORDER BY posts DESC, did LIMIT 3)
ORDER BY u.handle, s.date

-- name: demo_sample_handle
SELECT u.handle FROM users u
WHERE EXISTS (SELECT 1 FROM snapshots s WHERE s.did = u.did AND s.date = %(date)s) AND u.handle <> u.did
ORDER BY u.handle LIMIT 1
