-- The in-database merge of one staged batch, run in this order inside the batch's transaction.

-- name: free_taken_handles
-- Handles move between accounts and users.handle is UNIQUE: a row still holding a handle that a
-- staged profile now claims gives way, taking its own DID as a placeholder until its own
-- refresh. DIDs never look like handles, so placeholders never collide. When two staged
-- profiles claim one handle (the AppView should never say so), the lowest DID wins it.
UPDATE users u
SET handle = u.did, updated_at = now()
FROM (
    SELECT DISTINCT ON (handle) did, handle
    FROM stage_profiles
    WHERE handle <> 'handle.invalid'
    ORDER BY handle, did
) claim
WHERE u.handle = claim.handle AND u.did <> claim.did

-- name: merge_users
-- Changed profile fields only (no-op updates skipped); updated_at set when anything changed.
-- handle.invalid never overwrites a known handle, nor does a handle another staged profile won.
UPDATE users u
SET handle = CASE WHEN p.keeps_handle THEN u.handle ELSE p.handle END,
    "displayName" = p.display_name,
    avatar = p.avatar,
    updated_at = now()
FROM (
    SELECT did, handle, display_name, avatar,
           handle = 'handle.invalid' OR row_number() OVER (PARTITION BY handle ORDER BY did) > 1 AS keeps_handle
    FROM stage_profiles
) p
WHERE u.did = p.did
  AND (CASE WHEN p.keeps_handle THEN u.handle ELSE p.handle END, p.display_name, p.avatar)
      IS DISTINCT FROM (u.handle, u."displayName", u.avatar)

-- name: record_status
-- The account status getProfiles/getProfile gave, stamped when it changes.
UPDATE users u
SET account_status = s.status, account_status_at = now(), updated_at = now()
FROM stage_status s
WHERE u.did = s.did AND u.account_status IS DISTINCT FROM s.status

-- name: merge_posts
-- Upsert the staged posts. The source is deduplicated (a post can be read twice: pins,
-- self-reposts, a page boundary moving) because ON CONFLICT DO UPDATE cannot touch a row twice;
-- the copy with the highest counts is the freshest. Rows whose values did not change are not
-- rewritten, so a same-day rerun leaves posts."updatedAt" as it was.
INSERT INTO posts AS p (uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt")
SELECT DISTINCT ON (uri) uri, did, likes, replies, quotes, reposts, created_at, now()
FROM stage_posts
ORDER BY uri, likes + replies + quotes + reposts DESC
ON CONFLICT (uri) DO UPDATE
SET likes = EXCLUDED.likes,
    replies = EXCLUDED.replies,
    quotes = EXCLUDED.quotes,
    reposts = EXCLUDED.reposts,
    "createdAt" = EXCLUDED."createdAt",
    "updatedAt" = now()
WHERE (p.likes, p.replies, p.quotes, p.reposts, p."createdAt")
      IS DISTINCT FROM (EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts, EXCLUDED."createdAt")

-- name: delete_vanished_window_posts
-- A stored post inside a completely read window that the feed no longer returns was deleted.
DELETE FROM posts p
USING stage_reads r
WHERE r.complete
  AND p.did = r.did
  AND p."createdAt" >= COALESCE(r.window_start, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM stage_posts s WHERE s.uri = p.uri)

-- name: delete_vanished_refreshed_posts
-- getPosts silently omits deleted posts: an asked URI of an active author missing from the
-- answer was deleted.
DELETE FROM posts p
USING stage_asked a
WHERE p.uri = a.uri
  AND NOT EXISTS (SELECT 1 FROM stage_posts s WHERE s.uri = a.uri)
