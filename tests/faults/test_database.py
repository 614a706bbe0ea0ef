"""Database faults: connections killed mid-batch, a statement timeout, the disk full, the server
down at start or restarting mid-run.

A batch is caught in the middle deterministically: a test session holds a SHARE lock on
`snapshots`, so every batch transaction stops at its snapshot upsert, after it has already merged
the batch's users and posts (uncommitted). The test then kills or waits, and lets go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

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


def in_background(action: Callable[[], None]) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def kill_blocked_batches(dsn: str, lock: SnapshotLock, kills: int) -> list[int]:
    """Terminate the first batch caught at the lock `kills` times (its retry is caught again), then let go."""
    killed = []
    with psycopg.connect(dsn, autocommit=True) as admin:
        for _ in range(kills):
            pids = wait_for(lambda: [p for p in blocked_batches(admin, lock.dbname) if p not in killed])
            admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
            killed.append(pids[0])
    lock.release()
    return killed


def finish(w, expect, report, as_of):
    got = written(w.dsn, as_of.date())
    expect.after_run(as_of, got)
    state = end_state(w.dsn, expect, as_of.date())
    check_end_state(state, expect)
    return state


def test_a_batch_whose_connection_is_killed_mid_transaction_is_retried_on_a_new_connection(module_db, base, tmp_path):
    with world(module_db, base, tmp_path, "kill1", users=USERS, backfill_max_posts=BACKFILL, batch_users=15) as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        lock = SnapshotLock(w.dsn)
        killer = in_background(lambda: kill_blocked_batches(w.dsn, lock, 1))
        try:
            report, as_of = run_once(w.settings, w.sim, shards=1, workers=1)
        finally:
            lock.release()
        killer.join(30)
        assert killer.errors == []
        assert report.exit_code == 0 and report.status == "completed", report.shard_reports
        retried = [e["message"] for e in log_lines(w.log_file) if "retrying on a new connection" in e["message"]]
        assert len(retried) == 1 and "terminating connection" in retried[0]
        state = finish(w, expect, report, as_of)
        assert state.written == {did for did, u in expect.users.items() if u.status == "active"}


def test_a_batch_killed_again_on_its_retry_fails_the_shard_cleanly(module_db, base, tmp_path):
    with world(module_db, base, tmp_path, "kill2", users=USERS, backfill_max_posts=BACKFILL, batch_users=15) as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        lock = SnapshotLock(w.dsn)
        killer = in_background(lambda: kill_blocked_batches(w.dsn, lock, 2))
        try:
            report, as_of = run_once(w.settings, w.sim, shards=1, workers=1)
        finally:
            lock.release()
        killer.join(30)
        assert killer.errors == []
        assert report.exit_code == 1 and report.status == "failed"
        (shard,) = report.shard_reports.values()
        assert shard.status == "failed" and "terminating connection" in shard.error
        assert "\n" not in shard.error
        state = finish(w, expect, report, as_of)
        assert state.written == set()  # the first batch never committed: nothing of it is left
        assert state.shards[0]["status"] == "failed"
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)


def test_a_statement_timeout_fails_the_shard_with_one_clear_line(module_db, base, tmp_path):
    with world(
        module_db, base, tmp_path, "timeout", users=USERS, backfill_max_posts=BACKFILL, statement_timeout=0.5
    ) as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        lock = SnapshotLock(w.dsn)
        try:
            report, as_of = run_once(w.settings, w.sim, shards=1, workers=1)
        finally:
            lock.release()
        assert report.exit_code == 1 and report.status == "failed"
        (shard,) = report.shard_reports.values()
        assert shard.status == "failed"
        assert "statement timeout" in shard.error and "\n" not in shard.error
        state = finish(w, expect, report, as_of)
        assert state.written == set()
        rerun_completes(w.settings, w.sim, w.dsn, expect, as_of)


def control_backends(conn: psycopg.Connection, dbname: str) -> list[int]:
    """Backends of our workers that hold a shard's advisory lock (their control sessions)."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' "
            "WHERE a.datname = %s AND a.application_name LIKE 'dopplersky-etl shard%%' AND l.granted",
            (dbname,),
        )
    ]


def test_the_control_connection_killed_mid_run_reconnects_and_the_shard_completes(module_db, base, tmp_path):
    with world(module_db, base, tmp_path, "control", users=USERS, backfill_max_posts=BACKFILL, batch_users=15) as w:
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        lock = SnapshotLock(w.dsn)

        def kill_control() -> None:
            with psycopg.connect(w.dsn, autocommit=True) as admin:
                wait_for(lambda: blocked_batches(admin, lock.dbname))  # a batch is in flight
                (pid,) = control_backends(admin, lock.dbname)
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            lock.release()

        killer = in_background(kill_control)
        try:
            report, as_of = run_once(w.settings, w.sim, shards=1, workers=1)
        finally:
            lock.release()
        killer.join(30)
        assert killer.errors == []
        assert report.exit_code == 0 and report.status == "completed", report.shard_reports
        assert any("control connection broke" in e["message"] for e in log_lines(w.log_file))
        state = finish(w, expect, report, as_of)
        assert state.written == {did for did, u in expect.users.items() if u.status == "active"}


def test_a_batch_rolled_back_by_a_deadlock_is_written_again(dsn, base, monkeypatch):
    """Two shards' batches can deadlock when a handle moves between their users (each frees the
    other's row); PostgreSQL rolls one back, and that batch is written again at once."""
    import asyncio
    from collections import Counter
    from datetime import UTC, datetime

    from etl import worker as workermod
    from etl.stage import StagedBatch

    calls = []
    real = workermod.stage_batch

    async def deadlocking_once(conn, staged, run_date):
        calls.append(conn.info.backend_pid)
        if len(calls) == 1:
            await conn.execute("SELECT 1")  # the connection stays usable, as after a real deadlock
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return await real(conn, staged, run_date)

    monkeypatch.setattr(workermod, "stage_batch", deadlocking_once)
    now = datetime.now(UTC)
    task = workermod.ShardTask(
        run_id=1, shard=0, shard_count=1, run_at=now, run_date=now.date(), select_all=True, active_since=now,
        upto=None, resume=False, conninfo=dsn, settings=dict(base.values),
    )  # fmt: skip

    async def write_one() -> None:
        shard = workermod.ShardWorker(task)
        work = await shard._work_connection()
        try:
            batch = workermod.Fetched(selected=1, staged=StagedBatch(), failed={}, inactive=0, modes=Counter())
            assert await shard._write(work, batch) is work  # same connection: it was not broken
        finally:
            await work.close()

    asyncio.run(write_one())
    assert len(calls) == 2 and calls[0] == calls[1]


def _open_run_with_a_running_shard(conn: psycopg.Connection, pid: int, host: str) -> int:
    from datetime import date

    run_id = conn.execute(
        "INSERT INTO snapshot_logs (status, time_started, run_date, shard_count, selection, total_users) "
        "VALUES ('in_progress', now(), %s, 1, 'all', 0) RETURNING id",
        (date(2026, 1, 2),),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO etl_shards (run_id, shard, status, host, pid, started_at, heartbeat_at) "
        "VALUES (%s, 0, 'running', %s, %s, now(), now())",
        (run_id, host, pid),
    )
    return run_id


def test_the_outcome_a_worker_could_not_write_is_recorded_by_the_parent(dsn):
    """The database was gone when the worker finished: it sent its outcome over the pipe, and
    the parent writes it (only over that worker's own claim)."""
    import socket
    from dataclasses import asdict
    from datetime import UTC, datetime

    from etl import run as runmod
    from etl.pool import Outcome
    from etl.worker import ShardStats

    with psycopg.connect(dsn, autocommit=True) as conn:
        run_id = _open_run_with_a_running_shard(conn, 4242, socket.gethostname())
        stats = ShardStats(shard=0, status="completed", users_selected=3, users_written=3, pid=4242)
        report = runmod.RunReport(run_date=datetime(2026, 1, 2).date(), run_at=datetime.now(UTC), shards_here=[0], run_id=run_id)
        report.shard_reports[0] = runmod.ShardReport(0, "completed")
        runmod._write_outcomes(conn, report, {0: Outcome(0, asdict(stats), 0, pid=4242)})
        row = conn.execute("SELECT status, users_written FROM etl_shards WHERE run_id = %s", (run_id,)).fetchone()
        assert row == ("completed", 3)
        assert report.status == "completed"
        # A claim that is not this worker's (another pid) is left alone.
        conn.execute("UPDATE etl_shards SET status = 'running', pid = 777 WHERE run_id = %s", (run_id,))
        runmod._write_outcomes(conn, report, {0: Outcome(0, asdict(stats), 0, pid=4242)})
        assert conn.execute("SELECT status FROM etl_shards WHERE run_id = %s", (run_id,)).fetchone()[0] == "running"


def test_a_shard_left_running_by_a_worker_that_is_gone_is_marked_stale_by_the_next_run(dsn):
    from etl import run as runmod

    with psycopg.connect(dsn, autocommit=True) as conn:
        run_id = _open_run_with_a_running_shard(conn, 999_999, "gone-host")
        assert runmod.mark_stale_shards(conn) == [(run_id, 0)]
        status, error = conn.execute("SELECT status, error FROM etl_shards WHERE run_id = %s", (run_id,)).fetchone()
        run_status = conn.execute("SELECT status FROM snapshot_logs WHERE id = %s", (run_id,)).fetchone()[0]
    assert status == "stale" and "worker pid 999999 on gone-host stopped without finishing" in error
    assert run_status == "failed"
