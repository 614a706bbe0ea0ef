-- Statements of `etl schema`: the migration history and the lock that serialises appliers.

-- name: create_history
-- The history of applied migrations; created before the first migration, outside of them.
CREATE TABLE IF NOT EXISTS etl_schema_history (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    duration_ms REAL NOT NULL DEFAULT 0,
    applied_by  TEXT NOT NULL,
    adopted     BOOLEAN NOT NULL DEFAULT FALSE
)

-- name: history_exists
-- Whether the history table exists (without creating it: `status` and `verify` only read).
SELECT to_regclass('etl_schema_history') IS NOT NULL AS present

-- name: history
-- Applied migrations, oldest first.
SELECT version, name, checksum, applied_at, duration_ms, applied_by, adopted
FROM etl_schema_history
ORDER BY version

-- name: record_migration
-- One history row, written in the same transaction as the migration it records.
INSERT INTO etl_schema_history (version, name, checksum, duration_ms, applied_by, adopted)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s, %(applied_by)s, %(adopted)s)

-- name: try_lock
-- Session-level advisory lock: PostgreSQL releases it when the session ends, so a crashed
-- applier can never leave it behind.
SELECT pg_try_advisory_lock(%(namespace)s, %(key)s) AS locked

-- name: unlock
SELECT pg_advisory_unlock(%(namespace)s, %(key)s) AS unlocked

-- name: try_lock_shared
-- Shared form of the schema lock: runs hold it while they check the schema, so that a run
-- never starts against a half-applied migration.
SELECT pg_try_advisory_lock_shared(%(namespace)s, %(key)s) AS locked

-- name: unlock_shared
SELECT pg_advisory_unlock_shared(%(namespace)s, %(key)s) AS unlocked

-- name: lock_holders
-- Who holds an advisory lock (two-key form: objsubid = 2), for the "waiting for" message.
SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start, a.state
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = %(namespace)s::oid AND l.objid = %(key)s::oid AND l.objsubid = 2
  AND a.pid <> pg_backend_pid()
ORDER BY a.backend_start

-- name: probe_search_path
-- Migration 0001 is run into this session's temporary schema (and rolled back) to learn the
-- reference tables' exact shape, so adoption compares against the migration itself.
SELECT set_config('search_path', 'pg_temp', true)

-- name: columns_in_temp_schema
SELECT table_name, column_name, data_type, character_maximum_length
FROM information_schema.columns
WHERE table_schema = pg_my_temp_schema()::regnamespace::text
ORDER BY table_name, ordinal_position

-- name: indexes_in_temp_schema
SELECT tablename, indexname FROM pg_indexes WHERE schemaname = pg_my_temp_schema()::regnamespace::text

-- name: columns_in_schema
-- Columns of the named tables in the schema migrations apply to (the first of search_path).
SELECT table_name, column_name, data_type, character_maximum_length
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY(%(tables)s)
ORDER BY table_name, ordinal_position

-- name: indexes_in_schema
SELECT tablename, indexname FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = ANY(%(tables)s)

-- name: current_schema
SELECT current_schema() AS name
