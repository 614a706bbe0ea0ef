"""The daily run end to end against the simulated AppView: every number equal to its truth."""

from __future__ import annotations

import psycopg
import pytest

from etl.sim.expect import Expectation, fetch_json, sim_users
from etl.sim.server import serve_in_thread
from tests.run.conftest import dump, register_all, run_day, run_settings, sim_now, written

USERS = 240
SEED = 4


@pytest.fixture(scope="module")
def world(module_db, tmp_path_factory):
    """Three simulated days run one after the other into one database; the checks read it."""
    from etl.config import load_settings

    base = load_settings(environ={}, cwd=tmp_path_factory.mktemp("cfg"))
    dsn = module_db()
    with serve_in_thread(users=USERS, seed=SEED) as sim:
        settings = run_settings(base, dsn, sim.url)
        registered = register_all(settings, dsn, sim_users(sim.url))
        expect = Expectation(sim.url, registered)
        days = []
        events = {day: fetch_json(f"{sim.url}/_sim/events?day={day}") for day in (1, 2)}
        for day in range(3):
            if day:
                sim.advance(1)
            report = run_day(settings, sim)
            run_at = sim_now(sim)
            expect.after_run(run_at, written(dsn, run_at.date()))
            days.append((run_at.date(), report))
        before = dump(dsn)
        rerun = run_day(settings, sim, force=True)
        after = dump(dsn)
        yield {
            "dsn": dsn,
            "expect": expect,
            "days": days,
            "events": events,
            "registered": registered,
            "rerun": (rerun, before, after),
        }


def test_every_run_completes_with_exit_status_0(world):
    for day, report in world["days"]:
        assert report.status == "completed", (day, report.shard_reports)
        assert report.exit_code == 0


def test_snapshots_posts_and_users_equal_the_truth_every_day(world):
    with psycopg.connect(world["dsn"]) as conn:
        verdict = world["expect"].check(conn, [day for day, _ in world["days"]])
    assert verdict.mismatches == []
    assert verdict.snapshots > 2 * len(world["registered"])
    assert verdict.posts > 1000


def test_handle_swap_is_applied(world):
    a, b = world["events"][1]["handle_swaps"][0]
    with psycopg.connect(world["dsn"]) as conn:
        handles = dict(conn.execute("SELECT did, handle FROM users WHERE did = ANY(%s)", ([a, b],)).fetchall())
    assert handles[a] == world["registered"][b]
    assert handles[b] == world["registered"][a]


def test_deactivated_account_is_recorded_without_a_snapshot(world):
    (did,) = world["events"][2]["deactivations"]
    day2 = world["days"][2][0]
    with psycopg.connect(world["dsn"]) as conn:
        status = conn.execute("SELECT account_status FROM users WHERE did = %s", (did,)).fetchone()[0]
        snapshot = conn.execute("SELECT 1 FROM snapshots WHERE did = %s AND date = %s", (did, day2)).fetchone()
    assert status == "deactivated"
    assert snapshot is None
    assert world["days"][2][1].totals()["users_inactive"] >= 1


def test_deleted_window_posts_are_removed(world):
    with psycopg.connect(world["dsn"]) as conn:
        deleted = conn.execute("SELECT sum(posts_deleted) FROM etl_shards").fetchone()[0]
    assert deleted > 0  # the simulator deletes a few posts a day; the check above proves which


def test_same_day_rerun_leaves_every_row_unchanged(world):
    report, before, after = world["rerun"]
    assert report.status == "completed"
    assert after == before


def test_second_day_needs_far_fewer_requests_than_the_first(world):
    first, second = world["days"][0][1], world["days"][1][1]
    assert second.api.total_requests < first.api.total_requests / 3
    assert second.totals()["feed_skipped"] > 0
