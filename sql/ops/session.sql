-- Statements every connection runs.

-- name: set_session
-- Per-session settings (set_config, not startup options, which PgBouncer rejects): the statement
-- timeout in milliseconds, and work_mem for the merges' sorts and hashes.
SELECT set_config('statement_timeout', %(ms)s, false), set_config('work_mem', %(work_mem)s, false)

-- name: server_version
SELECT current_setting('server_version_num')::int AS version, version() AS banner

-- name: no_statement_timeout_local
-- For the rest of this transaction only (migrations may rewrite big tables).
SELECT set_config('statement_timeout', '0', true)
