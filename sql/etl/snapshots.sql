-- The day's snapshot rows and the run's memory of each user.

-- name: upsert_snapshots
-- One row per staged (successful) user for %(date)s: the profile's counts and the engagement
-- sums over all of the user's stored posts, computed here rather than shipped from Python.
-- Sums are capped to the INTEGER columns. A rerun overwrites the day's row, but only when a
-- value differs.
INSERT INTO snapshots AS s (did, date, followers, following, posts, likes, replies, quotes, reposts)
SELECT t.did, %(date)s, t.followers, t.follows, t.posts,
       LEAST(COALESCE(e.likes, 0), 2147483647)::integer,
       LEAST(COALESCE(e.replies, 0), 2147483647)::integer,
       LEAST(COALESCE(e.quotes, 0), 2147483647)::integer,
       LEAST(COALESCE(e.reposts, 0), 2147483647)::integer
FROM stage_profiles t
LEFT JOIN LATERAL (
    SELECT sum(p.likes) AS likes, sum(p.replies) AS replies, sum(p.quotes) AS quotes, sum(p.reposts) AS reposts
    FROM posts p
    WHERE p.did = t.did
) e ON TRUE
ON CONFLICT (did, date) DO UPDATE
SET followers = EXCLUDED.followers,
    following = EXCLUDED.following,
    posts = EXCLUDED.posts,
    likes = EXCLUDED.likes,
    replies = EXCLUDED.replies,
    quotes = EXCLUDED.quotes,
    reposts = EXCLUDED.reposts
WHERE (s.followers, s.following, s.posts, s.likes, s.replies, s.quotes, s.reposts)
      IS DISTINCT FROM (EXCLUDED.followers, EXCLUDED.following, EXCLUDED.posts,
                        EXCLUDED.likes, EXCLUDED.replies, EXCLUDED.quotes, EXCLUDED.reposts)

-- name: update_user_state
-- Remember, for each snapshotted user, postsCount (to skip the feed while it stays the same),
-- the backfill, and the date of the last complete window read.
INSERT INTO etl_user_state AS st (did, backfilled_at, backfill_complete, window_read_on, posts_count, updated_at)
SELECT t.did,
       CASE WHEN r.kind = 'backfill' THEN now() END,
       CASE WHEN r.kind = 'backfill' THEN r.complete AND r.window_start IS NULL END,
       CASE WHEN r.complete THEN %(date)s::date END,
       t.posts,
       now()
FROM stage_profiles t
LEFT JOIN stage_reads r ON r.did = t.did
ON CONFLICT (did) DO UPDATE
SET backfilled_at = COALESCE(EXCLUDED.backfilled_at, st.backfilled_at),
    backfill_complete = COALESCE(EXCLUDED.backfill_complete, st.backfill_complete),
    window_read_on = COALESCE(EXCLUDED.window_read_on, st.window_read_on),
    posts_count = EXCLUDED.posts_count,
    updated_at = now()
