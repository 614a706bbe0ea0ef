"""Versioned schema: apply, adopt, refuse changed or out-of-order files, serialise appliers."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import subprocess
import sys

import psycopg
import pytest
from click.testing import CliRunner

from etl import migrate
from etl.cli import cli
from tests.conftest import REPO, SHARED

REFERENCE_README = SHARED / "reference" / "dopplersky-workers-README.md"


def reference_sql() -> list[str]:
    """The SQL blocks of the reference README, verbatim."""
    return re.findall(r"```sql\n(.*?)```", REFERENCE_README.read_text(), re.S)


def history(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT version, name, adopted FROM etl_schema_history ORDER BY version").fetchall()


def apply_dir(dsn: str, directory=migrate.MIGRATIONS_DIR, **kwargs) -> migrate.ApplyResult:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return migrate.apply(conn, directory=directory, **kwargs)


@pytest.fixture
def migrations_copy(tmp_path):
    """A writable copy of sql/migrations."""
    target = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, target)
    return target


def test_migration_0001_is_the_reference_sql_verbatim():
    text = (migrate.MIGRATIONS_DIR / "0001_reference_schema.sql").read_text()
    for block in reference_sql():
        assert block.strip() in text


def test_apply_on_empty_database_creates_reference_tables(empty_dsn):
    result = apply_dir(empty_dsn)
    assert [m.version for m in result.applied] == [m.version for m in migrate.discover()]
    assert not result.adopted
    with psycopg.connect(empty_dsn) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'posts' ORDER BY ordinal_position"
        ).fetchall()
    assert {"users", "posts", "snapshots", "views", "snapshot_logs"} <= tables
    assert ("createdAt", "timestamp with time zone") in columns


def test_second_apply_has_nothing_to_do(empty_dsn):
    apply_dir(empty_dsn)
    assert apply_dir(empty_dsn).applied == []


def test_history_records_checksum_duration_and_applier(empty_dsn):
    apply_dir(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        row = conn.execute(
            "SELECT name, checksum, duration_ms, applied_by, applied_at FROM etl_schema_history WHERE version = 1"
        ).fetchone()
    first = migrate.discover()[0]
    assert row[0] == "reference_schema"
    assert row[1] == first.checksum and len(row[1]) == 64
    assert row[2] >= 0 and "@" in row[3] and row[4] is not None


def test_snapshot_logs_id_gets_a_sequence_past_the_existing_maximum(empty_dsn, migrations_copy):
    for path in sorted(migrations_copy.glob("*.sql"))[1:]:
        path.unlink()
    apply_dir(empty_dsn, migrations_copy)
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("INSERT INTO snapshot_logs (id, time_started) VALUES (41, now()), (7, now())")
        conn.commit()
    apply_dir(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        new_id = conn.execute("INSERT INTO snapshot_logs (time_started) VALUES (now()) RETURNING id").fetchone()[0]
    assert new_id == 42


def test_adopts_a_database_made_by_the_reference_sql(empty_dsn):
    with psycopg.connect(empty_dsn) as conn:
        for block in reference_sql():
            conn.execute(block)
        conn.execute("INSERT INTO users (did, handle) VALUES ('did:plc:abc', 'alice.example.com')")
        conn.execute("INSERT INTO snapshot_logs (id, time_started) VALUES (3, now())")
        conn.commit()
    result = apply_dir(empty_dsn)
    assert result.adopted
    assert history(empty_dsn)[0] == (1, "reference_schema", True)
    assert [m.version for m in result.applied] == [m.version for m in migrate.discover()][1:]
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT handle FROM users").fetchall() == [("alice.example.com",)]
        assert conn.execute("INSERT INTO snapshot_logs (time_started) VALUES (now()) RETURNING id").fetchone() == (4,)


def test_adoption_refuses_a_partial_reference_schema(empty_dsn):
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("CREATE TABLE users (did VARCHAR(255) PRIMARY KEY, handle TEXT)")
        conn.commit()
    with pytest.raises(migrate.MigrationError) as info:
        apply_dir(empty_dsn)
    message = str(info.value)
    assert "users.handle is text, expected character varying(255)" in message
    assert "table posts is missing" in message
    assert history(empty_dsn) == []


def test_changed_checksum_is_refused_naming_the_file(empty_dsn, migrations_copy):
    apply_dir(empty_dsn, migrations_copy)
    target = migrations_copy / "0002_snapshot_logs_id_sequence.sql"
    target.write_text(target.read_text() + "\n-- an edit after the fact\n")
    with pytest.raises(migrate.MigrationError, match="0002_snapshot_logs_id_sequence.sql was changed after it was applied"):
        apply_dir(empty_dsn, migrations_copy)


def test_out_of_order_pending_version_is_refused(empty_dsn, migrations_copy):
    (migrations_copy / "0009_later.sql").write_text("CREATE TABLE etl_later_t (id int);\n")
    apply_dir(empty_dsn, migrations_copy)
    (migrations_copy / "0008_forgotten.sql").write_text("CREATE TABLE etl_forgotten_t (id int);\n")
    with pytest.raises(migrate.MigrationError, match="0008_forgotten.sql is pending but older than applied migration 0009"):
        apply_dir(empty_dsn, migrations_copy)


def test_failed_migration_leaves_no_trace(empty_dsn, migrations_copy):
    (migrations_copy / "0090_broken.sql").write_text("CREATE TABLE etl_half (id int);\nSELECT * FROM nowhere;\n")
    with pytest.raises(migrate.MigrationError, match="0090_broken.sql failed"):
        apply_dir(empty_dsn, migrations_copy)
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('etl_half')").fetchone() == (None,)
    assert 90 not in [v for v, _, _ in history(empty_dsn)]


def test_malformed_migration_file_name_is_an_error(migrations_copy):
    (migrations_copy / "3_oops.sql").write_text("SELECT 1;\n")
    with pytest.raises(migrate.MigrationError, match="3_oops.sql: migration files are named NNNN_lower_case_name.sql"):
        migrate.discover(migrations_copy)


def test_duplicate_version_is_an_error(migrations_copy):
    (migrations_copy / "0002_again.sql").write_text("SELECT 1;\n")
    with pytest.raises(migrate.MigrationError, match="version 0002 is also"):
        migrate.discover(migrations_copy)


def test_waiting_applier_gives_up_naming_the_lock_holder(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as holder:
        pid = holder.info.backend_pid
        migrate.acquire_lock(holder, timeout=1)
        with pytest.raises(migrate.MigrationError) as info:
            apply_dir(empty_dsn, lock_timeout=0.5)
    assert f"held by pid {pid}" in str(info.value)
    assert "pg_terminate_backend" in str(info.value)


def _apply_in_process(dsn: str, directory: str, queue) -> None:
    from pathlib import Path

    with psycopg.connect(dsn, autocommit=True) as conn:
        result = migrate.apply(conn, directory=Path(directory))
    queue.put([m.version for m in result.applied])


def test_two_processes_applying_at_once_apply_each_migration_once(empty_dsn, migrations_copy):
    # A slow migration keeps the first applier busy while the second arrives and waits.
    (migrations_copy / "0050_slow.sql").write_text("SELECT pg_sleep(1.5);\nCREATE TABLE etl_slow_t (id int);\n")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_apply_in_process, args=(empty_dsn, str(migrations_copy), queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = sorted((queue.get(timeout=60) for _ in procs), key=len)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    versions = [m.version for m in migrate.discover(migrations_copy)]
    assert results == [[], versions]
    assert [v for v, _, _ in history(empty_dsn)] == versions


def test_two_cli_appliers_at_once_both_succeed(empty_dsn, clean_environ):
    env = {"DATABASE_URL": empty_dsn, "PATH": "/usr/bin:/bin", "HOME": str(clean_environ)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "etl", "schema", "apply"],
            cwd=clean_environ,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert [v for v, _, _ in history(empty_dsn)] == [m.version for m in migrate.discover()]
    assert sum("Applied 0001_reference_schema.sql" in out for out, _ in outputs) == 1


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_apply_then_nothing_to_do(empty_dsn, clean_environ, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    runner = CliRunner()
    first = runner.invoke(cli, ["schema", "apply"])
    assert first.exit_code == 0, first.output
    assert "Applied 0001_reference_schema.sql" in first.output
    second = runner.invoke(cli, ["schema", "apply"])
    assert second.exit_code == 0
    newest = migrate.discover()[-1].version
    assert second.output.endswith(f"Nothing to do: schema is up to date at version {newest:04d}.\n")


def test_cli_status_lists_applied_and_pending(empty_dsn, clean_environ, monkeypatch, migrations_copy):
    for path in sorted(migrations_copy.glob("*.sql"))[1:]:
        path.unlink()
    apply_dir(empty_dsn, migrations_copy)
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    result = CliRunner().invoke(cli, ["schema", "status"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert re.match(r"0001_reference_schema\.sql\s+applied\s+\d{4}-", lines[0])
    assert re.match(r"0002_snapshot_logs_id_sequence\.sql\s+pending$", lines[1])
    pending = len(migrate.discover()) - 1
    assert lines[-1] == f"1 applied, {pending} pending."


def test_cli_verify_exits_1_naming_a_changed_file(dsn, clean_environ, monkeypatch):
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE etl_schema_history SET checksum = 'x' || checksum WHERE version = 2")
    monkeypatch.setenv("DATABASE_URL", dsn)
    result = CliRunner().invoke(cli, ["schema", "verify"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: 0002_snapshot_logs_id_sequence.sql was changed after it was applied")
    refused = CliRunner().invoke(cli, ["schema", "apply"])
    assert refused.exit_code == 1
    assert "0002_snapshot_logs_id_sequence.sql was changed after it was applied" in refused.output


def test_cli_verify_passes_on_a_migrated_database(dsn, clean_environ, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", dsn)
    result = CliRunner().invoke(cli, ["schema", "verify"])
    assert result.exit_code == 0
    assert result.output == f"Verified {len(migrate.discover())} applied migrations.\n"
