-- Statements every connection runs.

-- name: set_statement_timeout
-- Per-session statement timeout in milliseconds (a SET, not a startup option, for PgBouncer).
SELECT set_config('statement_timeout', %(ms)s, false)

-- name: server_version
SELECT current_setting('server_version_num')::int AS version, version() AS banner

-- name: no_statement_timeout_local
-- For the rest of this transaction only (migrations may rewrite big tables).
SELECT set_config('statement_timeout', '0', true)
