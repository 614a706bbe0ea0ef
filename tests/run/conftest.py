"""Fixtures of the end-to-end run tests: a simulator, a database that lives for the module."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from etl import run as runmod
from etl.config import Settings
from etl.sim.expect import fetch_json
from etl.sqlfiles import OPS
from etl.users import register, resolve
from tests.conftest import dsn_of


def clone_database(template_executor, name: str):
    """A janitor for a database cloned from the migrated template."""
    return DatabaseJanitor(
        user=template_executor.user,
        host=template_executor.host,
        port=template_executor.port,
        dbname=name,
        template_dbname=template_executor.template_dbname,
        maintenance_dbname=template_executor.maintenance_dbname,
        password=template_executor.password,
    )


@pytest.fixture(scope="module")
def module_db(postgresql_template, request):
    """Factory: fresh migrated databases that live as long as the test module."""
    janitors = []

    def make(suffix: str = "") -> str:
        name = f"etl_{request.module.__name__.rsplit('.', 1)[-1]}{suffix}"[:60]
        janitor = clone_database(postgresql_template, name)
        janitor.drop()
        janitor.init()
        janitors.append(janitor)
        return dsn_of(postgresql_template, name)

    yield make
    for janitor in janitors:
        janitor.drop()


def sim_now(sim) -> datetime:
    """The simulator's clock (the run's --as-of)."""
    return datetime.fromisoformat(fetch_json(sim.url + "/_sim/clock")["now"].replace("Z", "+00:00"))


def run_settings(base: Settings, dsn: str, sim_url: str, **overrides) -> Settings:
    """Settings for a run against the simulator: no client pacing, small batches, quick retries."""
    values = dict(
        database_url=dsn,
        bluesky_base_url=sim_url,
        rate_limit=0,
        max_workers=2,
        batch_users=40,
        backoff_base=0.01,
        backoff_max=0.05,
        request_timeout=5,
    )
    values.update(overrides)
    return base.replace(**values)


def register_all(settings: Settings, dsn: str, users: list[dict]) -> dict[str, str]:
    """Register the simulator's accounts through `etl users` logic; returns did -> handle."""
    registrations = asyncio.run(resolve(settings, [u["did"] for u in users]))
    with psycopg.connect(dsn) as conn:
        register(conn, registrations)
        return dict(conn.execute(OPS.registered_users).fetchall())


def run_day(settings: Settings, sim, **options) -> runmod.RunReport:
    """One run at the simulator's current time."""
    opts = dict(shards=4, as_of=sim_now(sim))
    opts.update(options)
    return runmod.execute(settings, runmod.RunOptions(**opts), install_signals=False)


def written(dsn: str, day) -> set[str]:
    """DIDs with a snapshot for the day."""
    from etl.sim import expect

    with psycopg.connect(dsn) as conn:
        return expect.written(conn, day)


def dump(dsn: str) -> dict[str, list]:
    """The website's tables, every column, in a stable order (for equality checks)."""
    with psycopg.connect(dsn) as conn:
        return {
            "users": conn.execute("SELECT * FROM users ORDER BY did").fetchall(),
            "posts": conn.execute("SELECT * FROM posts ORDER BY uri").fetchall(),
            "snapshots": conn.execute(
                "SELECT did, date, followers, following, posts, likes, replies, quotes, reposts, created_at, uuid "
                "FROM snapshots ORDER BY did, date"
            ).fetchall(),
        }
