-- Staging: each batch's API results are copied (binary COPY) into these temporary tables, then
-- merged by the statements of merge.sql in the same transaction. ON COMMIT DELETE ROWS empties
-- them at every commit, so they are created once per connection and reused by every batch.

-- name: create_stage_tables
CREATE TEMP TABLE IF NOT EXISTS stage_profiles (
    did          TEXT NOT NULL,
    handle       TEXT NOT NULL,
    display_name TEXT,
    avatar       TEXT,
    followers    INTEGER NOT NULL,
    follows      INTEGER NOT NULL,
    posts        INTEGER NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_posts (
    uri        TEXT NOT NULL,
    did        TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    likes      INTEGER NOT NULL,
    replies    INTEGER NOT NULL,
    quotes     INTEGER NOT NULL,
    reposts    INTEGER NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_status (
    did    TEXT NOT NULL,
    status TEXT NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_reads (
    did          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    window_start TIMESTAMP WITH TIME ZONE,
    complete     BOOLEAN NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_asked (
    uri TEXT NOT NULL,
    did TEXT NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_profiles
-- Profiles of the batch's users whose API work succeeded: these get a snapshot.
COPY stage_profiles (did, handle, display_name, avatar, followers, follows, posts) FROM STDIN (FORMAT BINARY)

-- name: copy_posts
-- Own posts read from the feed or refreshed through getPosts.
COPY stage_posts (uri, did, created_at, likes, replies, quotes, reposts) FROM STDIN (FORMAT BINARY)

-- name: copy_status
-- Account status of every user the batch resolved (active, not_found, deactivated, takendown).
COPY stage_status (did, status) FROM STDIN (FORMAT BINARY)

-- name: copy_reads
-- Feed reads: kind backfill or window; complete = every post created since window_start was seen
-- (window_start NULL: the whole history), so stored posts there that were not seen are gone.
COPY stage_reads (did, kind, window_start, complete) FROM STDIN (FORMAT BINARY)

-- name: copy_asked
-- Window posts refreshed through getPosts; an asked URI missing from stage_posts was deleted.
COPY stage_asked (uri, did) FROM STDIN (FORMAT BINARY)

-- name: analyze_stage
-- Temporary tables have no statistics; without them the planner guesses and may scan posts.
ANALYZE stage_profiles, stage_posts, stage_status, stage_reads, stage_asked
