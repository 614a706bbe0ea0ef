"""Versioned schema migrations: sql/migrations/NNNN_name.sql, each applied once, in order, under a lock."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from etl.db import whoami
from etl.sqlfiles import OPS, SQL_DIR

log = logging.getLogger("etl.migrate")

MIGRATIONS_DIR = SQL_DIR / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Advisory locks use PostgreSQL's two-integer form: one namespace for this project ("dopp" in
# ASCII) so that our keys never collide with another application's locks in a shared database.
LOCK_NAMESPACE = 0x646F7070
SCHEMA_LOCK = 1
# How often a waiting applier says who it waits for.
WAIT_REPORT_SECONDS = 5.0
WAIT_POLL_SECONDS = 0.2

REFERENCE_TABLES = ("users", "posts", "snapshots", "views", "snapshot_logs")


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Applied:
    """One row of etl_schema_history."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: float
    applied_by: str
    adopted: bool


@dataclass
class SchemaState:
    """The migration files compared with the database's history."""

    migrations: list[Migration]
    applied: dict[int, Applied] = field(default_factory=dict)

    @property
    def pending(self) -> list[Migration]:
        return [m for m in self.migrations if m.version not in self.applied]

    def problems(self) -> list[str]:
        """Everything that forbids applying or running, one sentence each."""
        found = []
        by_version = {m.version: m for m in self.migrations}
        for version, row in sorted(self.applied.items()):
            migration = by_version.get(version)
            if migration is None:
                found.append(
                    f"migration {version:04d} ({row.name}) is applied but its file is missing: "
                    "this code is older than the database"
                )
            elif migration.checksum != row.checksum:
                found.append(
                    f"{migration.filename} was changed after it was applied "
                    f"(checksum {migration.checksum[:12]} now, {row.checksum[:12]} when applied); "
                    "restore the file and put the change in a new migration"
                )
        newest = max(self.applied, default=0)
        for migration in self.pending:
            if migration.version < newest:
                found.append(
                    f"{migration.filename} is pending but older than applied migration {newest:04d}; "
                    "renumber it after the newest applied migration"
                )
        return found

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.problems()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, by version; malformed names and duplicate versions are errors."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_case_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path}: version {version:04d} is also {migrations[version].path.name}")
        data = path.read_bytes()
        migrations[version] = Migration(
            version, match.group(2), path, data.decode("utf-8"), hashlib.sha256(data).hexdigest()
        )
    return [migrations[v] for v in sorted(migrations)]


def read_state(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> SchemaState:
    """Files and history, without changing anything."""
    state = SchemaState(discover(directory))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        if cur.execute(OPS.history_exists).fetchone()["present"]:
            state.applied = {row["version"]: Applied(**row) for row in cur.execute(OPS.history)}
    if not conn.autocommit:
        conn.rollback()
    return state


def _holders(conn: psycopg.Connection, key: int) -> str:
    rows = conn.execute(OPS.lock_holders, {"namespace": LOCK_NAMESPACE, "key": key}).fetchall()
    if not rows:
        return "another session"
    pid, app, addr, since, state = rows[0]
    return f"pid {pid} ({app or 'unknown application'}{' from ' + addr if addr else ''}, connected since {since:%Y-%m-%d %H:%M:%S %Z}, {state})"


def acquire_lock(
    conn: psycopg.Connection,
    key: int = SCHEMA_LOCK,
    *,
    timeout: float,
    what: str = "the schema lock",
    shared: bool = False,
) -> None:
    """Take an advisory lock, saying every few seconds who holds it; give up after `timeout` s."""
    statement = OPS.try_lock_shared if shared else OPS.try_lock
    params = {"namespace": LOCK_NAMESPACE, "key": key}
    started = time.monotonic()
    next_report = started + WAIT_REPORT_SECONDS
    while not conn.execute(statement, params).fetchone()[0]:
        now = time.monotonic()
        holder = _holders(conn, key)
        hint = (
            f"it is held by {holder}; if that process is gone or hung, end its session with "
            f"SELECT pg_terminate_backend(<pid>); PostgreSQL then releases the lock"
        )
        if now - started >= timeout:
            raise MigrationError(f"gave up waiting for {what} after {timeout:g}s: {hint}")
        if now >= next_report:
            log.info("waiting for %s: %s", what, hint)
            next_report = now + WAIT_REPORT_SECONDS
        time.sleep(WAIT_POLL_SECONDS)


def release_lock(conn: psycopg.Connection, key: int = SCHEMA_LOCK, *, shared: bool = False) -> None:
    """Release an advisory lock taken by acquire_lock."""
    statement = OPS.unlock_shared if shared else OPS.unlock
    conn.execute(statement, {"namespace": LOCK_NAMESPACE, "key": key})


def _shape(rows: list[tuple]) -> dict[str, dict[str, tuple]]:
    tables: dict[str, dict[str, tuple]] = {}
    for table, column, data_type, length in rows:
        tables.setdefault(table, {})[column] = (data_type, length)
    return tables


def _reference_shape(conn: psycopg.Connection, first: Migration) -> tuple[dict, set[tuple[str, str]]]:
    """Columns and indexes migration 0001 creates, learnt by running it in pg_temp and rolling back."""
    with conn.transaction(force_rollback=True):
        conn.execute(OPS.probe_search_path)
        conn.execute(first.sql)
        columns = _shape(conn.execute(OPS.columns_in_temp_schema).fetchall())
        indexes = {tuple(r) for r in conn.execute(OPS.indexes_in_temp_schema).fetchall()}
    return columns, indexes


def check_adoptable(conn: psycopg.Connection, first: Migration) -> bool:
    """True when 0001's tables already exist as the reference creates them (adopt, do not run)."""
    existing = _shape(conn.execute(OPS.columns_in_schema, {"tables": list(REFERENCE_TABLES)}).fetchall())
    if not existing:
        return False
    expected, expected_indexes = _reference_shape(conn, first)
    differences = []
    for table, columns in expected.items():
        if table not in existing:
            differences.append(f"table {table} is missing")
            continue
        for column, (data_type, length) in columns.items():
            found = existing[table].get(column)
            if found is None:
                differences.append(f"{table}.{column} is missing")
            elif found != (data_type, length):
                differences.append(
                    f"{table}.{column} is {found[0]}{f'({found[1]})' if found[1] else ''}, "
                    f"expected {data_type}{f'({length})' if length else ''}"
                )
    if differences:
        schema = conn.execute(OPS.current_schema).fetchone()[0]
        raise MigrationError(
            f"schema {schema} holds some of the reference tables but not as the reference README "
            f"creates them ({'; '.join(differences)}); fix them by hand, then run schema apply again"
        )
    present = {tuple(r) for r in conn.execute(OPS.indexes_in_schema, {"tables": list(REFERENCE_TABLES)}).fetchall()}
    missing = sorted(name for table, name in expected_indexes - present if not name.endswith(("_pkey", "_key")))
    if missing:
        log.warning("the adopted schema lacks the reference indexes %s; queries will be slower", ", ".join(missing))
    return True


@dataclass
class ApplyResult:
    """What `apply` did."""

    applied: list[Migration] = field(default_factory=list)
    adopted: bool = False


def apply(
    conn: psycopg.Connection,
    *,
    lock_timeout: float = 600.0,
    directory: Path = MIGRATIONS_DIR,
    on_applied: Callable[[Migration, float], None] | None = None,
) -> ApplyResult:
    """Apply pending migrations in order, each in one transaction with its history row."""
    if not conn.autocommit:
        raise ValueError("apply needs an autocommit connection (it manages its own transactions)")
    result = ApplyResult()
    acquire_lock(conn, timeout=lock_timeout)
    try:
        conn.execute(OPS.create_history)
        state = read_state(conn, directory)
        if not state.applied and state.migrations and state.migrations[0].version == 1:
            first = state.migrations[0]
            if check_adoptable(conn, first):
                with conn.transaction():
                    _record(conn, first, 0.0, adopted=True)
                result.adopted = True
                log.info("adopted the existing reference tables as migration %s", first.filename)
                state = read_state(conn, directory)
        problems = state.problems()
        if problems:
            raise MigrationError("; ".join(problems))
        for migration in state.pending:
            started = time.perf_counter()
            with conn.transaction():
                # Migrations may rewrite big tables: no statement timeout inside them.
                conn.execute(OPS.no_statement_timeout_local)
                try:
                    conn.execute(migration.sql)
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.filename} failed: {str(exc).strip()}") from exc
                duration = (time.perf_counter() - started) * 1000
                _record(conn, migration, duration, adopted=False)
            result.applied.append(migration)
            if on_applied:
                on_applied(migration, duration)
    finally:
        if not conn.closed and not conn.broken:
            release_lock(conn)
    return result


def _record(conn: psycopg.Connection, migration: Migration, duration_ms: float, *, adopted: bool) -> None:
    conn.execute(
        OPS.record_migration,
        {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "duration_ms": duration_ms,
            "applied_by": whoami(),
            "adopted": adopted,
        },
    )
