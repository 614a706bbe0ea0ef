-- Which users a run processes. The selection rule lives in select_users only; every other use
-- (batches, dry-run counts, --limit) pages through it.

-- name: select_users
-- The shard's selected users after %(after)s in DID order: keyset paging on the primary key, so
-- each shard reads the users table once however many batches it takes. skip_user and the
-- activity rule (a view, or last_active, since %(active_since)s; its date for views.date) are
-- applied here, before any API call. %(upto)s is the last DID --limit admits (NULL: no limit);
-- with %(resume)s, users that already have this date's snapshot are left out.
SELECT u.did
FROM users u
WHERE u.did > %(after)s
  AND (%(upto)s::text IS NULL OR u.did <= %(upto)s::text)
  AND NOT COALESCE(u.skip_user, FALSE)
  AND etl_shard(u.did, %(shard_count)s) = %(shard)s
  AND (
        %(select_all)s
        OR u.last_active >= %(active_since)s
        OR EXISTS (SELECT 1 FROM views v WHERE v.did = u.did AND v.date >= %(active_since)s::date)
      )
  AND (NOT %(resume)s OR NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.did = u.did AND s.date = %(run_date)s))
ORDER BY u.did
LIMIT %(limit)s OFFSET %(offset)s

-- name: batch_context
-- What the run remembers of a batch's users: whether their history was backfilled, postsCount
-- at the last snapshot, the last complete window read, and the URIs of their stored posts
-- inside the window (refreshed through getPosts when no feed read is needed).
SELECT u.did,
       u.handle,
       st.backfilled_at IS NOT NULL AS backfilled,
       st.posts_count,
       st.window_read_on,
       ARRAY(
           SELECT p.uri FROM posts p
           WHERE p.did = u.did AND p."createdAt" >= %(window_start)s
           ORDER BY p.uri
       ) AS window_uris
FROM users u
LEFT JOIN etl_user_state st ON st.did = u.did
WHERE u.did = ANY(%(dids)s)
ORDER BY u.did
