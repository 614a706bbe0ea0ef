"""`etl run`, `etl users`, `etl status` through the CLI: options, output and exit statuses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.sim.expect import sim_users
from etl.sim.server import serve_in_thread
from tests.conftest import REPO
from tests.run.conftest import sim_now

USERS = 60
SEED = 4


@pytest.fixture(scope="module")
def sim():
    with serve_in_thread(users=USERS, seed=SEED) as server:
        yield server


@pytest.fixture
def env(dsn, sim, clean_environ, monkeypatch):
    """The CLI pointed at this test's database and the simulator, with no client pacing."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.setenv("BLUESKY_BASE_URL", sim.url)
    monkeypatch.setenv("ETL_RATE_LIMIT", "0")
    monkeypatch.setenv("MAX_WORKERS", "2")
    monkeypatch.setenv("ETL_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("ETL_BACKOFF_MAX", "0.05")
    return {"dsn": dsn, "sim": sim, "cwd": clean_environ}


def etl(*args: str):
    return CliRunner().invoke(cli, list(args))


def register_all(env) -> list[dict]:
    users = sim_users(env["sim"].url)
    path = env["cwd"] / "users.txt"
    path.write_text("\n".join(u["did"] for u in users) + "\n")
    etl("users", "import", str(path))
    return users


def test_run_with_no_users_says_how_to_add_them_and_exits_0(env):
    result = etl("run")
    assert result.exit_code == 0
    assert "No users are registered yet" in result.output
    assert "bin/etl users add HANDLE_OR_DID" in result.output


def test_users_add_reports_unknown_and_malformed_entries_and_exits_1(env):
    users = sim_users(env["sim"].url)
    active, gone = users[0], users[1]
    env["sim"].set_faults({"targets": {gone["did"]: {"status": "deactivated"}}})
    try:
        result = etl("users", "add", active["handle"], "@" + active["handle"], gone["did"], "not a handle!", "nobody.example.com")
    finally:
        env["sim"].set_faults({})
    assert result.exit_code == 1
    assert f"added     {active['handle']}  {active['did']}" in result.output
    assert f"exists    {active['handle']}  {active['did']}" in result.output
    assert f"deactivated {gone['did']}" in result.output
    assert "malformed not a handle!: not a handle or a DID" in result.output
    assert "not_found nobody.example.com" in result.output
    assert result.output.rstrip().endswith("Error: 3 of 5 entries were not registered")
    with psycopg.connect(env["dsn"]) as conn:
        assert conn.execute("SELECT did, handle FROM users").fetchall() == [(active["did"], active["handle"])]


def test_users_import_reads_a_csv_with_a_handle_column(env):
    users = [u for u in sim_users(env["sim"].url) if u["status"] == "active"][:5]
    path = env["cwd"] / "signups.csv"
    path.write_text("email,handle\n" + "".join(f"u{i}@example.com,{u['handle']}\n" for i, u in enumerate(users)))
    result = etl("users", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("5 entries: 5 added.")
    listing = etl("users", "list")
    assert listing.exit_code == 0
    assert listing.output.rstrip().endswith("5 of 5 users shown.")
    assert all(u["handle"] in listing.output for u in users)


def test_dry_run_counts_per_shard_and_writes_nothing(env):
    users = register_all(env)
    active = sum(u["status"] == "active" for u in users)
    result = etl("run", "--dry-run", "--shards", "4")
    assert result.exit_code == 0
    assert re.findall(r"shard +\d+: \d+ users selected", result.output).__len__() == 4
    assert f"total: {active} users selected" in result.output
    with psycopg.connect(env["dsn"]) as conn:
        assert conn.execute("SELECT count(*) FROM snapshot_logs").fetchone()[0] == 0


def test_activity_rule_all_and_limit_select_users_in_sql(env):
    register_all(env)
    with psycopg.connect(env["dsn"]) as conn:
        total = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        dids = [r[0] for r in conn.execute("SELECT did FROM users ORDER BY did")]
        # Nobody active for a month, except a view three days ago for one user, and a skipped one.
        conn.execute("UPDATE users SET last_active = now() - interval '30 days'")
        conn.execute("INSERT INTO views (did, date) VALUES (%s, (now() - interval '3 days')::date)", (dids[0],))
        conn.execute("UPDATE users SET skip_user = TRUE WHERE did = %s", (dids[1],))
    assert "total: 1 users selected" in etl("run", "--dry-run").output
    assert f"total: {total - 1} users selected" in etl("run", "--dry-run", "--all").output
    assert f"total: {total - 1} users selected" in etl("run", "--dry-run", "--simple-query").output
    assert "total: 0 users selected" in etl("run", "--dry-run", "--active-days", "2").output
    assert "total: 1 users selected" in etl("run", "--dry-run", "--active-days", "3").output
    assert "total: 7 users selected" in etl("run", "--dry-run", "--all", "--limit", "7").output


def test_a_full_run_prints_the_summary_and_exits_0_then_skips_completed_shards(env):
    register_all(env)
    as_of = sim_now(env["sim"]).isoformat()
    result = etl("run", "--shards", "2", "--as-of", as_of, "--quiet")
    assert result.exit_code == 0, result.output
    assert re.search(r"Run \d+ of \d{4}-\d\d-\d\d \(2 shards, active:7\): completed in", result.output)
    assert re.search(r"^total +completed", result.output, re.M)
    again = etl("run", "--shards", "2", "--as-of", as_of)
    assert again.exit_code == 0
    assert "nothing to do here; completed shards skipped: 0, 1 (--force reruns them)." in again.output
    status = etl("status", "--date", as_of[:10])
    assert status.exit_code == 0
    assert re.search(r"Run \d+ of .*: completed \(2 shards, active:7;", status.output)
    assert len(re.findall(r"^  [01] +completed", status.output, re.M)) == 2


def test_status_of_a_day_without_runs_names_the_latest(env):
    result = etl("status", "--date", "2001-01-01")
    assert result.exit_code == 0
    assert result.output == "No runs on 2001-01-01. No run has been recorded yet.\n"


def test_a_failed_user_makes_the_run_exit_1(env):
    users = register_all(env)
    victim = next(u["did"] for u in users if u["status"] == "active")
    env["sim"].set_faults({"targets": {victim: {"profile": "500"}}})
    try:
        result = etl("run", "--shards", "2", "--as-of", sim_now(env["sim"]).isoformat())
    finally:
        env["sim"].set_faults({})
    assert result.exit_code == 1
    assert re.search(r"Error: run \d+: shards \d did not complete \(\d+ users failed\)", result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shards", "8", "--shard-index", "9"], "Error: shard index 9 is out of range for 8 shards (0-7)\n"),
        (["--shards", "0"], None),
        (["--as-of", "yesterday"], None),
    ],
)
def test_usage_errors_exit_2(env, args, message):
    result = etl("run", *args)
    assert result.exit_code == 2
    if message:
        assert result.output == message


def test_scheduler_index_variable_chooses_the_shard(env, monkeypatch):
    register_all(env)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    result = etl("run", "--shards", "4", "--dry-run")
    assert result.exit_code == 0
    assert re.findall(r"shard +(\d+):", result.output) == ["1"]


def test_unreachable_database_exits_3(env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://etl@127.0.0.1:9/nowhere")
    result = etl("run")
    assert result.exit_code == 3
    assert result.output.startswith("Error: cannot connect to the database etl@127.0.0.1:9/nowhere:")


def test_schema_not_up_to_date_exits_3(env, empty_dsn, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    result = etl("run")
    assert result.exit_code == 3
    assert "the schema is not up to date (pending 0001_reference_schema.sql" in result.output
    assert "run etl schema apply first" in result.output


def test_health_check_option_checks_database_and_appview(env, monkeypatch):
    # The default probe (bsky.app's DID) does not exist in the simulator: a clear failure line.
    missing = etl("health")
    assert missing.exit_code == 1
    assert missing.output.splitlines()[1] == (
        f"appview   FAIL  {env['sim'].url} answered, but the probe account did:plc:z72i7hdynmk6r22z27h6tvur is not_found"
    )
    probe = sim_users(env["sim"].url)[0]["did"]
    monkeypatch.setenv("ETL_HEALTH_ACTOR", probe)
    ok = etl("run", "--health-check")
    assert ok.exit_code == 0, ok.output
    lines = ok.output.splitlines()
    assert lines[0].startswith("database  ok")
    assert lines[1].startswith(f"appview   ok    {env['sim'].url} answered getProfiles for {probe} in")
    env["sim"].set_faults({"rates": {"500": 1.0}, "attempts": 100})
    try:
        bad = etl("health")
    finally:
        env["sim"].set_faults({})
    assert bad.exit_code == 1
    assert bad.output.splitlines()[1].startswith("appview   FAIL")


def test_sigterm_stops_the_run_within_seconds_with_exit_130(env, sim):
    register_all(env)
    # Latency keeps the run busy long enough to be interrupted in the middle.
    env["sim"].call(lambda: setattr(env["sim"].state, "latency", 0.2))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl", "run", "--shards", "2", "--as-of", (sim_now(sim) + timedelta(days=0)).isoformat()],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=env["cwd"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with psycopg.connect(env["dsn"], autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if conn.execute("SELECT count(*) FROM etl_shards WHERE status = 'running'").fetchone()[0]:
                    break
                time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        env["sim"].call(lambda: setattr(env["sim"].state, "latency", 0.0))
    assert proc.returncode == 130, (out, err)
    assert stopped_in < 20
    with psycopg.connect(env["dsn"]) as conn:
        states = {row[0] for row in conn.execute("SELECT status FROM etl_shards")}
        workers = [row[0] for row in conn.execute("SELECT pid FROM etl_shards")]
        run_state = conn.execute("SELECT status FROM snapshot_logs").fetchone()[0]
        backends = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'dopplersky-etl%%'"
        ).fetchone()[0]
    assert "running" not in states and "interrupted" in states
    assert run_state == "failed"
    assert backends == 0  # no connection left open
    assert workers and not [pid for pid in workers if _alive(pid)]  # no child process left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_failed_health_exits_1_through_the_installed_entry_point(env):
    proc = subprocess.run(
        [sys.executable, "-m", "etl", "health"],
        env={**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": "postgresql://etl@127.0.0.1:9/nowhere"},
        cwd=env["cwd"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("database  FAIL  cannot connect to the database etl@127.0.0.1:9/nowhere:")
