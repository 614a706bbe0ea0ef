-- The naive ways of writing rows that `make bench` compares the project's path with: one
-- statement per row (executed per row, or through executemany). Not used by the ETL itself.

-- name: upsert_post_row
-- merge_posts for one row given as parameters.
INSERT INTO posts AS p (uri, did, likes, replies, quotes, reposts, "createdAt", "updatedAt")
VALUES (%(uri)s, %(did)s, %(likes)s, %(replies)s, %(quotes)s, %(reposts)s, %(created_at)s, now())
ON CONFLICT (uri) DO UPDATE
SET likes = EXCLUDED.likes,
    replies = EXCLUDED.replies,
    quotes = EXCLUDED.quotes,
    reposts = EXCLUDED.reposts,
    "createdAt" = EXCLUDED."createdAt",
    "updatedAt" = now()
WHERE (p.likes, p.replies, p.quotes, p.reposts, p."createdAt")
      IS DISTINCT FROM (EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts, EXCLUDED."createdAt")

-- name: upsert_snapshot_row
-- upsert_snapshots for one user: the same row, the same sums over the user's posts in SQL.
INSERT INTO snapshots AS s (did, date, followers, following, posts, likes, replies, quotes, reposts)
SELECT %(did)s::text, %(date)s::date, %(followers)s::integer, %(follows)s::integer, %(posts)s::integer,
       LEAST(COALESCE(sum(p.likes), 0), 2147483647)::integer,
       LEAST(COALESCE(sum(p.replies), 0), 2147483647)::integer,
       LEAST(COALESCE(sum(p.quotes), 0), 2147483647)::integer,
       LEAST(COALESCE(sum(p.reposts), 0), 2147483647)::integer
FROM posts p
WHERE p.did = %(did)s::text
ON CONFLICT (did, date) DO UPDATE
SET followers = EXCLUDED.followers, following = EXCLUDED.following, posts = EXCLUDED.posts,
    likes = EXCLUDED.likes, replies = EXCLUDED.replies, quotes = EXCLUDED.quotes, reposts = EXCLUDED.reposts
WHERE (s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts)
      IS DISTINCT FROM (EXCLUDED.followers, EXCLUDED.following, EXCLUDED.posts,
                        EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts)

-- name: copy_users
COPY users (did, handle) FROM STDIN (FORMAT BINARY)

-- name: copy_posts
COPY posts (uri, did, likes, replies, quotes, reposts, "createdAt") FROM STDIN (FORMAT BINARY)

-- name: analyze_all
ANALYZE users, posts, snapshots
