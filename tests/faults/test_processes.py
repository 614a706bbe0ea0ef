"""Process faults, through the real command line: the database down at start, SIGTERM to the
parent, SIGKILL of a worker, two runs of one shard, `schema apply` twice at once, and a run
started while `schema apply` holds the schema."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from etl import migrate
from tests.faults.conftest import (
    SnapshotLock,
    blocked_batches,
    check_end_state,
    end_state,
    rerun_completes,
    world,
    written,
)
from tests.run.conftest import sim_now
from tests.run.test_resilience import etl_process

pytestmark = pytest.mark.slow

USERS = 40
BACKFILL = 100


def wait_for(predicate, timeout: float = 60.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def shard_rows(dsn: str, where: str = "TRUE") -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT shard, status, pid, users_written FROM etl_shards WHERE {where} ORDER BY shard").fetchall()  # noqa: S608 - fixed text


def hold_mid_batch(dsn: str) -> tuple[SnapshotLock, tuple]:
    """Once a shard has written a batch, hold the next batches at their snapshot upsert (mid-
    transaction); the lock and the row of a shard whose batch is held: surely mid-way."""
    wait_for(lambda: [r for r in shard_rows(dsn, "status = 'running'") if r[3] > 0])
    lock = SnapshotLock(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin:
        wait_for(lambda: blocked_batches(admin, lock.dbname))
        name = admin.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (blocked_batches(admin, lock.dbname)[0],)
        ).fetchone()[0]
    shard = int(name.rsplit(" ", 1)[1])  # "dopplersky-etl shard N"
    return lock, next(r for r in shard_rows(dsn) if r[0] == shard)


def slow_world(module_db, base, tmp_path, name: str):
    """Latency on every answer and small batches: a run lasts long enough to be hit mid-way."""
    return world(
        module_db, base, tmp_path, name, users=USERS, backfill_max_posts=BACKFILL, batch_users=6,
        sim_options={"latency_ms": 40},
    )  # fmt: skip


def run_args(sim, *extra: str, shards: int = 2) -> list[str]:
    return ["run", "--shards", str(shards), "--workers", "2", "--as-of", sim_now(sim).isoformat(), *extra]


def test_the_database_down_at_start_is_one_line_and_exit_3(base, tmp_path):
    settings = base.replace(database_url="postgresql://etl:pw@127.0.0.1:1/etl", db_connect_timeout=2)
    proc = etl_process(settings, "run")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: cannot connect to the database etl@127.0.0.1:1/etl: ")
    assert "Connection refused" in lines[0]


def test_sigterm_to_the_parent_interrupts_cleanly_and_a_rerun_completes(module_db, base, tmp_path):
    with slow_world(module_db, base, tmp_path, "sigterm") as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        as_of = sim_now(w.sim)
        proc = etl_process(w.settings, *run_args(w.sim))
        lock, _ = hold_mid_batch(w.dsn)
        try:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            lock.release()
        assert proc.returncode == 130, (out, err)
        rows = shard_rows(w.dsn)
        assert rows and {r[1] for r in rows} <= {"interrupted", "completed"}
        assert "interrupted" in {r[1] for r in rows}
        for _, _, pid, _ in rows:  # every worker process is gone
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        state = end_state(w.dsn, expect, as_of.date())
        check_end_state(state, expect)  # what was written is whole and right; nothing is running
        assert state.runs[0]["status"] == "failed"
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)


def test_sigkill_of_one_worker_fails_its_shard_only_and_a_rerun_completes(module_db, base, tmp_path):
    with slow_world(module_db, base, tmp_path, "sigkill") as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        as_of = sim_now(w.sim)
        proc = etl_process(w.settings, *run_args(w.sim))
        lock, (shard, _, pid, _) = hold_mid_batch(w.dsn)
        try:
            os.kill(pid, signal.SIGKILL)  # its batch dies mid-transaction
            time.sleep(0.5)
        finally:
            lock.release()  # the other shard goes on
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (out, err)
        rows = {r[0]: r for r in shard_rows(w.dsn)}
        assert rows[shard][1] == "failed"
        assert rows[1 - shard][1] == "completed"  # the other worker finished its shard
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        state = end_state(w.dsn, expect, as_of.date())
        check_end_state(state, expect)
        error = next(r["error"] for r in state.shards if r["shard"] == shard)
        assert "SIGKILL" in error
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)


def test_a_second_run_of_a_shard_being_worked_refuses_it(module_db, base, tmp_path):
    with slow_world(module_db, base, tmp_path, "twice") as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        as_of = sim_now(w.sim)
        lock = SnapshotLock(w.dsn)  # the first run's batches wait at their snapshot upsert
        try:
            first = etl_process(w.settings, *run_args(w.sim, "--shard-index", "0", shards=1))
            _, _, pid, _ = wait_for(lambda: shard_rows(w.dsn, "status = 'running'"))[0]
            second = etl_process(w.settings, *run_args(w.sim, "--shard-index", "0", shards=1))
            out2, err2 = second.communicate(timeout=60)
            assert first.poll() is None, "the first run must still be working when the second gives up"
        finally:
            lock.release()
        out1, err1 = first.communicate(timeout=120)
        assert first.returncode == 0, (out1, err1)
        assert second.returncode == 1, (out2, err2)
        assert f"being worked by pid {pid}" in out2 + err2
        rows = shard_rows(w.dsn)
        assert [(r[0], r[1], r[2]) for r in rows] == [(0, "completed", pid)]  # the row stays the first run's
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        check_end_state(end_state(w.dsn, expect, as_of.date()), expect)


def test_schema_apply_twice_at_once_applies_each_migration_once(base, empty_dsn):
    settings = base.replace(database_url=empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as holder:
        # Both commands start while the lock is held, so they really contend for it.
        migrate.acquire_lock(holder, timeout=5)
        procs = [etl_process(settings, "schema", "apply") for _ in range(2)]
        time.sleep(1.0)
        assert [p.poll() for p in procs] == [None, None]  # both wait
        migrate.release_lock(holder)
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        versions = [row[0] for row in holder.execute("SELECT version FROM etl_schema_history ORDER BY version")]
    assert versions == [m.version for m in migrate.discover()]


def test_a_run_started_while_schema_apply_migrates_waits_for_it(module_db, base, tmp_path):
    with world(module_db, base, tmp_path, "migrating", users=20, backfill_max_posts=BACKFILL) as w:
        with psycopg.connect(w.dsn, autocommit=True) as holder:
            migrate.acquire_lock(holder, timeout=5)  # what schema apply holds while it migrates
            proc = etl_process(w.settings, *run_args(w.sim))
            time.sleep(1.5)
            assert proc.poll() is None
            assert holder.execute("SELECT count(*) FROM snapshot_logs").fetchone()[0] == 0  # not started
            migrate.release_lock(holder)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        as_of = sim_now(w.sim)
        expect.after_run(as_of, written(w.dsn, as_of.date()))
        check_end_state(end_state(w.dsn, expect, as_of.date()), expect)
