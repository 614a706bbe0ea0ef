-- 0003: what the daily run needs besides the reference tables. Only additions: the website's
-- tables keep every column as it is.

-- The shard of a user: the first 4 bytes of md5(did) as an unsigned integer, modulo the shard
-- count. etl/shards.py computes the same in Python (a test compares 10,000 DIDs).
CREATE OR REPLACE FUNCTION etl_shard(did TEXT, shard_count INTEGER) RETURNS INTEGER
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (('x' || substr(md5(did), 1, 8))::bit(32)::bigint % shard_count)::integer $$;

-- A run is identified by its date, its shard count and what it selects; machines running
-- disjoint shards of the same run share this row.
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS run_date DATE;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS shard_count INTEGER;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS selection TEXT;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS failed_users INTEGER DEFAULT 0;
ALTER TABLE snapshot_logs ADD COLUMN IF NOT EXISTS error TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS snapshot_logs_run_key
    ON snapshot_logs (run_date, shard_count, selection) WHERE run_date IS NOT NULL;

-- One row per shard of a run: who works it, its state and its counts.
CREATE TABLE IF NOT EXISTS etl_shards (
    run_id          INTEGER NOT NULL REFERENCES snapshot_logs (id) ON DELETE CASCADE,
    shard           INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'running',
    host            TEXT,
    pid             INTEGER,
    started_at      TIMESTAMP WITH TIME ZONE,
    finished_at     TIMESTAMP WITH TIME ZONE,
    heartbeat_at    TIMESTAMP WITH TIME ZONE,
    duration        REAL,
    users_selected  INTEGER NOT NULL DEFAULT 0,
    users_written   INTEGER NOT NULL DEFAULT 0,
    users_failed    INTEGER NOT NULL DEFAULT 0,
    users_inactive  INTEGER NOT NULL DEFAULT 0,
    feed_skipped    INTEGER NOT NULL DEFAULT 0,
    api_requests    INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    rate_limited    INTEGER NOT NULL DEFAULT 0,
    posts_merged    INTEGER NOT NULL DEFAULT 0,
    posts_deleted   INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    PRIMARY KEY (run_id, shard),
    CONSTRAINT etl_shards_status CHECK (status IN ('running', 'completed', 'partial', 'failed', 'interrupted', 'stale'))
);

-- What getProfile said of an account that getProfiles left out (NULL until the first run).
ALTER TABLE users ADD COLUMN IF NOT EXISTS account_status TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS account_status_at TIMESTAMP WITH TIME ZONE;

-- The run's memory of each user, kept apart from `users` so the website's table does not churn.
CREATE TABLE IF NOT EXISTS etl_user_state (
    did               VARCHAR(255) PRIMARY KEY REFERENCES users (did) ON DELETE CASCADE,
    backfilled_at     TIMESTAMP WITH TIME ZONE,   -- history read once (up to backfill_max_posts)
    backfill_complete BOOLEAN,                    -- false when the cap or an error cut it short
    window_read_on    DATE,                       -- last complete read of the window by feed
    posts_count       INTEGER,                    -- postsCount when the last snapshot was written
    updated_at        TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
