-- Run bookkeeping: one snapshot_logs row per run (date, shard count, selection), one etl_shards
-- row per shard of it.

-- name: open_run
-- The run's row, created by the first machine to start it and shared by the others.
INSERT INTO snapshot_logs (status, time_started, run_date, shard_count, selection, total_users)
VALUES ('in_progress', now(), %(run_date)s, %(shard_count)s, %(selection)s, 0)
ON CONFLICT (run_date, shard_count, selection) WHERE run_date IS NOT NULL
DO UPDATE SET run_date = EXCLUDED.run_date
RETURNING id, status, time_started

-- name: mark_run_in_progress
UPDATE snapshot_logs SET status = 'in_progress', time_completed = NULL, error = NULL
WHERE id = %(run_id)s AND status <> 'in_progress'

-- name: run_shards
-- The shard rows of a run.
SELECT shard, status, host, pid, started_at, finished_at, heartbeat_at, users_written, users_failed, error
FROM etl_shards WHERE run_id = %(run_id)s ORDER BY shard

-- name: claim_shard
-- Taken while holding the shard's advisory lock: this process now works the shard.
INSERT INTO etl_shards AS s (run_id, shard, status, host, pid, started_at, heartbeat_at)
VALUES (%(run_id)s, %(shard)s, 'running', %(host)s, %(pid)s, now(), now())
ON CONFLICT (run_id, shard) DO UPDATE
SET status = 'running', host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = now(), heartbeat_at = now(),
    finished_at = NULL, duration = NULL, error = NULL,
    users_selected = 0, users_written = 0, users_failed = 0, users_inactive = 0, feed_skipped = 0,
    api_requests = 0, retries = 0, rate_limited = 0, posts_merged = 0, posts_deleted = 0

-- name: update_shard
-- Counters so far (after every batch: a heartbeat for `etl status`), and the final state. With
-- %(pid)s and %(host)s given (the parent recording an outcome its worker reported but could not
-- write, the database having been gone), only that worker's claim still running is changed.
UPDATE etl_shards
SET status = %(status)s,
    heartbeat_at = now(),
    finished_at = CASE WHEN %(status)s = 'running' THEN NULL ELSE now() END,
    duration = extract(epoch FROM now() - started_at),
    users_selected = %(users_selected)s,
    users_written = %(users_written)s,
    users_failed = %(users_failed)s,
    users_inactive = %(users_inactive)s,
    feed_skipped = %(feed_skipped)s,
    api_requests = %(api_requests)s,
    retries = %(retries)s,
    rate_limited = %(rate_limited)s,
    posts_merged = %(posts_merged)s,
    posts_deleted = %(posts_deleted)s,
    error = %(error)s
WHERE run_id = %(run_id)s AND shard = %(shard)s
  AND (%(pid)s::integer IS NULL OR (status = 'running' AND pid = %(pid)s AND host = %(host)s))

-- name: fail_shard
-- The parent's verdict on a shard whose worker could not say it itself (killed, interrupted).
-- Only the claim of that worker (its pid on its host) is changed: if the shard's lock was free
-- long enough for another process to claim the shard, that claim is theirs.
UPDATE etl_shards
SET status = %(status)s, finished_at = now(), duration = extract(epoch FROM now() - started_at), error = %(error)s
WHERE run_id = %(run_id)s AND shard = %(shard)s AND status = 'running'
  AND pid = %(pid)s AND host = %(host)s

-- name: running_shards
-- Shards that say they are running, in any run: each is checked against its advisory lock.
SELECT s.run_id, s.shard, s.host, s.pid, s.heartbeat_at
FROM etl_shards s WHERE s.status = 'running' ORDER BY s.run_id, s.shard

-- name: try_shard_lock
-- Two processes never work the same shard of the same run: a session-level advisory lock,
-- released by PostgreSQL if the process dies, so a dead worker never blocks a rerun.
SELECT pg_try_advisory_lock(%(namespace)s, %(key)s) AS locked

-- name: release_shard_lock
SELECT pg_advisory_unlock(%(namespace)s, %(key)s) AS unlocked

-- name: finalize_run
-- The run's state from its shards: completed when every shard is, in_progress while any runs
-- (or some have not started yet), failed when none runs and one did not complete.
-- total_users counts the snapshot rows of the run's date.
UPDATE snapshot_logs l
SET status = CASE
        WHEN agg.completed = l.shard_count THEN 'completed'
        WHEN agg.running > 0 THEN 'in_progress'
        WHEN agg.bad > 0 THEN 'failed'
        ELSE 'in_progress'
    END,
    time_completed = CASE
        WHEN agg.completed = l.shard_count OR (agg.running = 0 AND agg.bad > 0) THEN now()
    END,
    duration = extract(epoch FROM now() - l.time_started),
    total_users = (SELECT count(*) FROM snapshots s WHERE s.date = l.run_date),
    failed_users = agg.failed_users,
    error = agg.error
FROM (
    SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'running') AS running,
           count(*) FILTER (WHERE status IN ('failed', 'partial', 'interrupted', 'stale')) AS bad,
           COALESCE(sum(users_failed), 0) AS failed_users,
           string_agg(CASE WHEN error IS NOT NULL THEN 'shard ' || shard || ': ' || error END, '; ' ORDER BY shard) AS error
    FROM etl_shards WHERE run_id = %(run_id)s
) agg
WHERE l.id = %(run_id)s
RETURNING l.status, l.total_users, l.failed_users

-- name: runs_of_day
-- `etl status`: the runs of a date, newest first.
SELECT id, status, run_date, shard_count, selection, time_started, time_completed, duration, total_users, failed_users, error
FROM snapshot_logs WHERE run_date = %(run_date)s ORDER BY id DESC

-- name: shards_of_run
SELECT shard, status, host, pid, started_at, finished_at, heartbeat_at, duration, users_selected, users_written,
       users_failed, users_inactive, feed_skipped, api_requests, retries, rate_limited, posts_merged,
       posts_deleted, error
FROM etl_shards WHERE run_id = %(run_id)s ORDER BY shard

-- name: latest_run_date
SELECT max(run_date) AS run_date FROM snapshot_logs

-- name: lock_run
-- Taken before finalize_run in the same transaction: two shards finishing at once compute the
-- run's state one after the other, each seeing the other's shard row.
SELECT id FROM snapshot_logs WHERE id = %(run_id)s FOR UPDATE

-- name: unfinished_runs
-- Runs still marked in_progress although none of their shards runs (their parent died before
-- recording the end): finalize_run gives them their real state.
SELECT l.id
FROM snapshot_logs l
WHERE l.status = 'in_progress' AND l.run_date IS NOT NULL
  AND EXISTS (SELECT 1 FROM etl_shards s WHERE s.run_id = l.id)
  AND NOT EXISTS (SELECT 1 FROM etl_shards s WHERE s.run_id = l.id AND s.status = 'running')
ORDER BY l.id
