-- `etl report`: one user's daily snapshots with their changes over 1, 7 and 30 days.

-- name: report_find_user
-- The registered user a command-line argument names: a DID, or a handle in any letter case
-- (handles are case-insensitive). An exact DID wins over a handle.
SELECT did, handle, "displayName"
FROM users
WHERE did = %(did)s OR lower(handle) = lower(%(handle)s)
ORDER BY did = %(did)s DESC, did
LIMIT 1

-- name: report_latest_date
-- The date of the user's newest snapshot (NULL: none yet); the report ends there by default.
SELECT max(date) AS latest FROM snapshots WHERE did = %(did)s

-- name: report_days
-- One row per calendar day from %(first)s to %(last)s: that day's snapshot (NULLs on a day
-- without one) and the change of followers, of the engagement total (likes + replies + quotes +
-- reposts) and of each of its parts since 1, 7 and 30 days before. The day series is dense and
-- starts 30 days before %(first)s, so lag(x, n) is exactly n calendar days back, also for the
-- first rows shown; NULL minus anything is NULL, so a change is empty when either end has no
-- snapshot. Sums and differences are bigint: four INTEGER counts can overflow an INTEGER.
WITH days AS (
    SELECT d::date AS date
    FROM generate_series((%(first)s::date - 30)::timestamp, %(last)s::date::timestamp, interval '1 day') AS d
),
series AS (
    SELECT days.date,
           s.followers::bigint AS followers,
           s.following::bigint AS following,
           s.posts::bigint AS posts,
           s.likes::bigint AS likes,
           s.replies::bigint AS replies,
           s.quotes::bigint AS quotes,
           s.reposts::bigint AS reposts,
           s.likes::bigint + s.replies + s.quotes + s.reposts AS engagement
    FROM days
    LEFT JOIN snapshots s ON s.did = %(did)s AND s.date = days.date
),
changes AS (
    SELECT series.*,
           followers - lag(followers, 1) OVER w AS followers_change_1d,
           followers - lag(followers, 7) OVER w AS followers_change_7d,
           followers - lag(followers, 30) OVER w AS followers_change_30d,
           engagement - lag(engagement, 1) OVER w AS engagement_change_1d,
           engagement - lag(engagement, 7) OVER w AS engagement_change_7d,
           engagement - lag(engagement, 30) OVER w AS engagement_change_30d,
           likes - lag(likes, 1) OVER w AS likes_change_1d,
           likes - lag(likes, 7) OVER w AS likes_change_7d,
           likes - lag(likes, 30) OVER w AS likes_change_30d,
           replies - lag(replies, 1) OVER w AS replies_change_1d,
           replies - lag(replies, 7) OVER w AS replies_change_7d,
           replies - lag(replies, 30) OVER w AS replies_change_30d,
           quotes - lag(quotes, 1) OVER w AS quotes_change_1d,
           quotes - lag(quotes, 7) OVER w AS quotes_change_7d,
           quotes - lag(quotes, 30) OVER w AS quotes_change_30d,
           reposts - lag(reposts, 1) OVER w AS reposts_change_1d,
           reposts - lag(reposts, 7) OVER w AS reposts_change_7d,
           reposts - lag(reposts, 30) OVER w AS reposts_change_30d
    FROM series
    WINDOW w AS (ORDER BY date)
)
SELECT date, followers, following, posts, likes, replies, quotes, reposts, engagement,
       followers_change_1d, followers_change_7d, followers_change_30d,
       engagement_change_1d, engagement_change_7d, engagement_change_30d,
       likes_change_1d, likes_change_7d, likes_change_30d,
       replies_change_1d, replies_change_7d, replies_change_30d,
       quotes_change_1d, quotes_change_7d, quotes_change_30d,
       reposts_change_1d, reposts_change_7d, reposts_change_30d
FROM changes
WHERE date >= %(first)s::date
ORDER BY date
