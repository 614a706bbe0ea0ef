"""The run split across processes, killed mid-way, and with one user failing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from etl.sim.expect import Expectation, sim_users
from etl.sim.server import serve_in_thread
from tests.conftest import REPO
from tests.run.conftest import register_all, run_day, run_settings, sim_now, written

USERS = 120
SEED = 4
# Columns that say when a row was written, not what it holds: they differ between two databases
# filled by different processes.
TIME_COLUMNS = {"created_at", "updated_at", "updatedAt", "last_active", "uuid", "account_status_at"}


@pytest.fixture
def base(tmp_path):
    from etl.config import load_settings

    return load_settings(environ={}, cwd=tmp_path)


def etl_process(settings, *args: str) -> subprocess.Popen:
    """`python -m etl ARGS` with the settings as environment variables."""
    from etl.config import env_name

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/")}
    for key, value in settings.values.items():
        if value is not None and key != "data_dir":
            env[env_name(key)] = str(value)
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def content(dsn: str) -> dict[str, list]:
    """The website's tables without the columns that record when rows were written."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table, key in (("users", "did"), ("posts", "uri"), ("snapshots", "did, date")):
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")  # noqa: S608 - fixed names
            keep = [i for i, col in enumerate(cur.description) if col.name not in TIME_COLUMNS]
            out[table] = [tuple(row[i] for i in keep) for row in cur.fetchall()]
    return out


def test_two_processes_on_disjoint_shards_equal_one_process_on_all(module_db, base):
    split_dsn, whole_dsn = module_db("_split"), module_db("_whole")
    with serve_in_thread(users=USERS, seed=SEED) as sim:
        users = sim_users(sim.url)
        for dsn in (split_dsn, whole_dsn):
            register_all(run_settings(base, dsn, sim.url), dsn, users)
        for day in range(2):
            if day:
                sim.advance(1)
            as_of = sim_now(sim).isoformat()
            split = run_settings(base, split_dsn, sim.url)
            procs = [etl_process(split, "run", "--shards", "4", "--shard-index", spec, "--as-of", as_of) for spec in ("0-1", "2-3")]
            outputs = [proc.communicate(timeout=300) for proc in procs]
            assert [p.returncode for p in procs] == [0, 0], outputs
            whole = run_day(run_settings(base, whole_dsn, sim.url), sim)
            assert whole.exit_code == 0
            with psycopg.connect(split_dsn) as conn:
                runs = conn.execute(
                    "SELECT status, shard_count FROM snapshot_logs WHERE run_date = %s", (sim_now(sim).date(),)
                ).fetchall()
            assert runs == [("completed", 4)]  # both machines shared one run row, completed by the last
    assert content(split_dsn) == content(whole_dsn)


def test_worker_killed_mid_run_leaves_no_partial_batch_and_a_rerun_completes(module_db, base):
    dsn = module_db("_kill")
    # Latency makes the run last long enough to kill a worker in the middle of it.
    with serve_in_thread(users=USERS, seed=SEED, latency_ms=40) as sim:
        settings = run_settings(base, dsn, sim.url, batch_users=10, concurrency=4)
        registered = register_all(settings, dsn, sim_users(sim.url))
        as_of = sim_now(sim)
        proc = etl_process(settings, "run", "--shards", "2", "--workers", "2", "--as-of", as_of.isoformat())
        victim = None
        deadline = time.monotonic() + 120
        with psycopg.connect(dsn, autocommit=True) as conn:
            while victim is None and time.monotonic() < deadline and proc.poll() is None:
                row = conn.execute(
                    "SELECT shard, pid FROM etl_shards WHERE status = 'running' AND users_written > 0 ORDER BY shard LIMIT 1"
                ).fetchone()
                if row:
                    victim = row
                time.sleep(0.05)
        assert victim is not None, "no shard got far enough to be killed"
        os.kill(victim[1], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (out, err)
        assert f"shard {victim[0]}: worker process ended by SIGKILL" in out
        with psycopg.connect(dsn) as conn:
            status, error = conn.execute("SELECT status, error FROM etl_shards WHERE shard = %s", (victim[0],)).fetchone()
            orphans = conn.execute(
                "SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.did = p.did)"
            ).fetchone()[0]
            unbalanced = conn.execute(
                "SELECT count(*) FROM snapshots s WHERE s.likes <> "
                "(SELECT COALESCE(sum(likes), 0) FROM posts p WHERE p.did = s.did)"
            ).fetchone()[0]
            run_status = conn.execute("SELECT status FROM snapshot_logs").fetchone()[0]
        assert status == "failed" and "SIGKILL" in error
        assert run_status == "failed"
        assert orphans == 0  # no batch half written: posts only with their snapshot
        assert unbalanced == 0
        rerun = run_day(settings, sim, shards=2)
        assert rerun.exit_code == 0, rerun.shard_reports
        assert rerun.status == "completed"
        expect = Expectation(sim.url, registered)
        expect.after_run(as_of, written(dsn, as_of.date()))
        with psycopg.connect(dsn) as conn:
            assert expect.check(conn, [as_of.date()]).mismatches == []


def test_one_users_api_failure_fails_that_user_only(module_db, base):
    dsn = module_db("_one")
    with serve_in_thread(users=USERS, seed=SEED) as sim:
        settings = run_settings(base, dsn, sim.url)
        registered = register_all(settings, dsn, sim_users(sim.url))
        victim = sorted(registered)[7]
        sim.set_faults({"targets": {victim: {"feed": "500"}}})
        report = run_day(settings, sim)
        as_of = sim_now(sim)
        assert report.exit_code == 1
        assert report.totals()["users_failed"] == 1
        assert report.totals()["users_written"] == len(registered) - 1
        bad = [r for r in report.shard_reports.values() if r.status != "completed"]
        assert len(bad) == 1 and bad[0].status == "partial"
        assert "1 users failed: getAuthorFeed (1)" in bad[0].error
        got = written(dsn, as_of.date())
        assert victim not in got
        expect = Expectation(sim.url, registered)
        expect.after_run(as_of, got)
        with psycopg.connect(dsn) as conn:
            assert expect.check(conn, [as_of.date()]).mismatches == []
            assert conn.execute("SELECT count(*) FROM posts WHERE did = %s", (victim,)).fetchone()[0] == 0
        # The fault gone, a plain rerun (no --force) does the remaining user and completes the day.
        sim.set_faults({})
        again = run_day(settings, sim)
        assert again.exit_code == 0
        assert again.totals()["users_selected"] == 1
        assert victim in written(dsn, as_of.date())


def test_parent_killed_its_workers_finish_and_complete_the_run_row(module_db, base):
    dsn = module_db("_parent")
    with serve_in_thread(users=60, seed=SEED, latency_ms=30) as sim:
        settings = run_settings(base, dsn, sim.url, batch_users=10)
        register_all(settings, dsn, sim_users(sim.url))
        proc = etl_process(settings, "run", "--shards", "2", "--workers", "2", "--as-of", sim_now(sim).isoformat())
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not conn.execute(
                "SELECT count(*) FROM etl_shards WHERE status = 'running'"
            ).fetchone()[0]:
                time.sleep(0.05)
            proc.kill()  # the parent only: its workers go on, orphaned
            proc.communicate(timeout=30)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM etl_shards WHERE status = 'running'"
            ).fetchone()[0]:
                time.sleep(0.2)
            shards = conn.execute("SELECT status FROM etl_shards ORDER BY shard").fetchall()
            run = conn.execute("SELECT status, time_completed IS NOT NULL FROM snapshot_logs").fetchone()
    assert shards == [("completed",), ("completed",)]
    assert run == ("completed", True)  # the last worker to finish completed the run row


def test_status_repairs_a_run_left_in_progress_with_no_shard_running(dsn, clean_environ, monkeypatch):
    from click.testing import CliRunner

    from etl.cli import cli

    with psycopg.connect(dsn) as conn:
        run_id = conn.execute(
            "INSERT INTO snapshot_logs (status, time_started, run_date, shard_count, selection) "
            "VALUES ('in_progress', now(), '2026-12-01', 2, 'active:7') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO etl_shards (run_id, shard, status, started_at, finished_at) "
            "VALUES (%s, 0, 'completed', now(), now()), (%s, 1, 'completed', now(), now())",
            (run_id, run_id),
        )
    monkeypatch.setenv("DATABASE_URL", dsn)
    result = CliRunner().invoke(cli, ["status", "--date", "2026-12-01"])
    assert result.exit_code == 0
    assert f"Run {run_id} of 2026-12-01: completed (2 shards, active:7;" in result.output
