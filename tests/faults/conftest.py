"""The fault matrix's harness: a simulator (optionally with a hook on its answers), a database per
scenario, runs, and one check of the end state every row asserts.

`check_end_state` is the issue's list made executable: snapshots equal the simulator's truth for
every user whose API work succeeded; failed users are counted in their shard's row with the
reason; no shard row is left `running` and no run row `in_progress`; no row is lost or duplicated
(counts equal the expectation's). `rerun_completes` removes the faults and runs again without
--force: the day must complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from etl import run as runmod
from etl.config import Settings, load_settings
from etl.sim.expect import Expectation, sim_users
from etl.sim.server import STATE, SimOptions, ThreadedServer, make_app, start_site
from etl.validate import DISPLAY_NAME_MAX, clean_text
from tests.run.conftest import module_db, register_all, run_settings, sim_now, written  # noqa: F401 - fixture, re-exported

USERS = 80
SEED = 11


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Settings:
    """Defaults only: no environment, no .env."""
    return load_settings(environ={}, cwd=tmp_path_factory.mktemp("cfg"))


@contextlib.contextmanager
def serve(*, middlewares: tuple = (), **options: Any) -> Iterator[ThreadedServer]:
    """Like etl.sim.server.serve_in_thread, with aiohttp middlewares in front of the simulator
    (a test's hook on requests and answers, e.g. to change the world between two calls)."""
    app = make_app(SimOptions(**options))
    app.middlewares.extend(middlewares)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        box["runner"], box["port"] = loop.run_until_complete(start_site(app))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="sim-faults", daemon=True)
    thread.start()
    assert ready.wait(30), "the simulator did not start"
    try:
        yield ThreadedServer(f"http://127.0.0.1:{box['port']}", app, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def sim_state(request: web.Request):
    return request.app[STATE]


def fault_settings(base: Settings, dsn: str, url: str, log_file: Path, **overrides: Any) -> Settings:
    """Quick retries and short timeouts (so timeout faults cost about a second), JSON logs to a
    file the test reads (the workers log there from their own processes)."""
    values = dict(
        request_timeout=1.5,
        connect_timeout=1,
        max_attempts=4,
        backoff_base=0.01,
        backoff_max=0.05,
        log_file=str(log_file),
        log_format="json",
    )
    values.update(overrides)
    return run_settings(base, dsn, url, **values)


def log_lines(path: Path) -> list[dict]:
    """The JSON log lines written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def user_failures(path: Path, skip: int = 0) -> dict[str, str]:
    """DID -> reason of every `user DID failed: REASON` line after the first `skip` lines."""
    found = {}
    for entry in log_lines(path)[skip:]:
        message = entry["message"]
        if message.startswith("user ") and " failed: " in message:
            did, reason = message[5:].split(" failed: ", 1)
            found[did] = reason
    return found


def run_once(settings: Settings, sim, **options: Any) -> tuple[runmod.RunReport, datetime]:
    as_of = sim_now(sim)
    opts = dict(shards=2, workers=2, as_of=as_of)
    opts.update(options)
    return runmod.execute(settings, runmod.RunOptions(**opts), install_signals=False), as_of


def clean_names(expect: Expectation) -> None:
    """Display names as the run stores them: NULs removed, lone surrogates replaced, at most
    DISPLAY_NAME_MAX characters (etl.validate); everything else verbatim."""
    for user in expect.users.values():
        if isinstance(user.display_name, str):
            user.display_name = clean_text(user.display_name, DISPLAY_NAME_MAX)


@dataclass
class EndState:
    """What the database holds after a run, for the assertions of one row."""

    shards: list[dict]
    runs: list[dict]
    posts: int
    snapshots: int
    users: int
    mismatches: list[str]
    written: set[str]
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def users_failed(self) -> int:
        return sum(row["users_failed"] for row in self.shards)


def rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def end_state(dsn: str, expect: Expectation, day: date, dates: list[date] | None = None) -> EndState:
    """Read the database; compare it with the expectation (which after_run has brought up to date)."""
    with psycopg.connect(dsn) as conn:
        verdict = expect.check(conn, dates or [day])
        return EndState(
            shards=rows(conn, "SELECT * FROM etl_shards ORDER BY run_id, shard"),
            runs=rows(conn, "SELECT * FROM snapshot_logs ORDER BY id"),
            posts=conn.execute("SELECT count(*) FROM posts").fetchone()[0],
            snapshots=conn.execute("SELECT count(*) FROM snapshots WHERE date = %s", (day,)).fetchone()[0],
            users=conn.execute("SELECT count(*) FROM users").fetchone()[0],
            mismatches=verdict.mismatches,
            written=written(dsn, day),
        )


def check_end_state(state: EndState, expect: Expectation, *, failed: set[str] = frozenset()) -> None:
    """The assertions every row of the matrix makes about the database after its run."""
    assert state.mismatches == [], state.mismatches[:10]
    # Nothing left running: every shard row finished, every run row decided.
    assert [r for r in state.shards if r["status"] == "running"] == []
    assert [r for r in state.runs if r["status"] == "in_progress"] == []
    # Nothing lost or duplicated: exactly the expected rows.
    assert state.posts == sum(len(u.posts) for u in expect.users.values())
    assert state.snapshots == len(state.written)
    assert state.users == len(expect.users)
    # Failed users: no snapshot, and counted in their shard's row with a reason.
    assert not (failed & state.written)
    latest = max(r["run_id"] for r in state.shards) if state.shards else None
    for row in state.shards:
        if row["run_id"] != latest:
            continue
        if row["users_failed"]:
            assert row["status"] == "partial", row
            assert f"{row['users_failed']} users failed" in row["error"], row


def rerun_completes(settings: Settings, sim, dsn: str, expect: Expectation, as_of: datetime) -> EndState:
    """Faults removed, the same day again without --force: every active user written."""
    sim.set_faults({})
    before = written(dsn, as_of.date())
    report, _ = run_once(settings, sim, as_of=as_of)
    assert report.exit_code == 0, {s: (r.status, r.error) for s, r in report.shard_reports.items()}
    assert report.status == "completed"
    got = written(dsn, as_of.date())
    # Only the users this run wrote change (a rerun without --force leaves the others alone).
    expect.after_run(as_of, got - before)
    clean_names(expect)
    state = end_state(dsn, expect, as_of.date())
    check_end_state(state, expect)
    active = {did for did, u in expect.users.items() if u.status == "active"}
    assert active <= got
    return state


def blocked_batches(conn: psycopg.Connection, dbname: str) -> list[int]:
    """Backends of our workers waiting for a lock inside a batch transaction."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'dopplersky-etl shard%%' "
            "AND wait_event_type = 'Lock' AND state = 'active'",
            (dbname,),
        )
    ]


class SnapshotLock:
    """Holds a SHARE lock on snapshots in its own session (batches stop at their upsert)."""

    def __init__(self, dsn: str):
        self.conn = psycopg.connect(dsn)
        self.conn.execute("LOCK TABLE snapshots IN SHARE MODE")
        self.dbname = self.conn.info.dbname

    def release(self) -> None:
        if not self.conn.closed:
            with contextlib.suppress(psycopg.OperationalError):  # the server may have gone
                self.conn.rollback()
            self.conn.close()


@dataclass
class World:
    """A registered population in its own database, served by its own simulator."""

    sim: ThreadedServer
    dsn: str
    settings: Settings
    registered: dict[str, str]
    log_file: Path

    def expectation(self) -> Expectation:
        return Expectation(self.sim.url, self.registered)


@contextlib.contextmanager
def world(
    make_db: Callable[[str], str],
    base: Settings,
    tmp_path: Path,
    name: str,
    *,
    users: int = USERS,
    seed: int = SEED,
    middlewares: tuple = (),
    sim_options: dict | None = None,
    **settings_overrides: Any,
) -> Iterator[World]:
    """A database cloned from the migrated template, a simulator and the users registered."""
    dsn = make_db("_" + name)
    with serve(users=users, seed=seed, middlewares=middlewares, **(sim_options or {})) as sim:
        log_file = tmp_path / f"{name}.log"
        settings = fault_settings(base, dsn, sim.url, log_file, **settings_overrides)
        registered = register_all(settings, dsn, sim_users(sim.url))
        yield World(sim, dsn, settings, registered, log_file)
