"""`etl demo`: the whole job against a simulated AppView, checked against its truth."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from etl.cli.options import EtlError, common_options, settings_from_context

DEMO_DIR = Path(".etl") / "demo"


def _say(text: str = "") -> None:
    click.echo(text)


@click.command()
@click.option("--users", type=click.IntRange(min=10), default=3000, show_default=True, help="Simulated accounts.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the simulated world.")
@click.option("--days", type=click.IntRange(min=1, max=30), default=2, show_default=True, help="Daily runs to make.")
@click.option("--shards", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--dir",
    "demo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEMO_DIR,
    show_default=True,
    help="Where the demo's own embedded database lives (recreated each time).",
)
@common_options
def demo(users: int, seed: int, days: int, shards: int, demo_dir: Path) -> None:
    """Run the daily job against a simulated AppView and check every number against its truth.

    Starts the simulator, gives the demo its own embedded database in --dir (never your real
    data), registers the simulated accounts through `users import` logic, runs --days daily
    runs (the last one dated today), prints the status and a few snapshots, and verifies that
    every snapshot, stored post and user row equals what the simulator says is true. Exit 1 if
    anything differs.

    Example: etl demo --users 3000 --days 2
    """
    from etl import migrate
    from etl import run as runmod
    from etl.cli.progress import RunDisplay
    from etl.db import connect, resolve_conninfo
    from etl.embedded import stop as stop_embedded
    from etl.sim.expect import Expectation, fetch_json, sim_users, written
    from etl.sim.process import SimProcess
    from etl.sqlfiles import OPS
    from etl.users import register, resolve

    started = time.monotonic()
    demo_dir = demo_dir.resolve()
    if demo_dir.exists():
        stop_embedded(demo_dir)
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    base = settings_from_context()
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=days - 1)
    _say(f"Starting a simulated AppView: {users:,} accounts, seed {seed}, first day {first_day}.")
    with SimProcess(users=users, seed=seed, start=first_day) as sim:
        # The simulator has no rate limit; the real AppView allows about 10 requests/s per IP.
        settings = base.replace(
            bluesky_base_url=sim.url, rate_limit=0, data_dir=str(demo_dir), database_url=None,
            db_host=None, db_name=None, db_user=None, db_port=None, db_password=None,
        )  # fmt: skip
        conninfo = resolve_conninfo(settings)
        with connect(conninfo, settings, autocommit=True) as conn:
            migrate.apply(conn)
        _say(f"Demo database: the embedded PostgreSQL in {demo_dir / 'pgdata'} (schema applied).")

        accounts = sim_users(sim.url)
        registrations = asyncio.run(resolve(settings, [a["did"] for a in accounts]))
        with connect(conninfo, settings) as conn:
            register(conn, registrations)
            registered = dict(conn.execute(OPS.registered_users).fetchall())
        refused = len(accounts) - len(registered)
        _say(
            f"Registered {len(registered):,} accounts through the AppView; {refused} were refused "
            "(deleted, deactivated or taken down accounts cannot be registered)."
        )
        expect = Expectation(
            sim.url, registered, window_days=settings.post_window_days,
            backfill_max_posts=settings.backfill_max_posts, full_read_days=settings.full_read_days,
        )  # fmt: skip
        run_dates = []
        for day in range(days):
            if day:
                fetch_json_post(sim.url + "/_sim/advance?days=1")
            as_of = datetime.fromisoformat(fetch_json(sim.url + "/_sim/clock")["now"].replace("Z", "+00:00"))
            _say()
            _say(f"Day {day + 1}: etl run --shards {shards} --as-of {as_of:%Y-%m-%dT%H:%M:%SZ}")
            display = RunDisplay(every=settings.progress_seconds)
            options = runmod.RunOptions(shards=shards, as_of=as_of)
            report = runmod.execute(settings, options, on_progress=display.progress)
            display.close()
            display.summary(report, options)
            with connect(conninfo, settings) as conn:
                expect.after_run(as_of, written(conn, as_of.date()))
            run_dates.append(as_of.date())

        with connect(conninfo, settings) as conn:
            verdict = expect.check(conn, run_dates)
            top = conn.execute(OPS.demo_top_snapshots, {"date": run_dates[-1]}).fetchall()
            sample = conn.execute(OPS.demo_sample_handle, {"date": run_dates[-1]}).fetchone()
    _say()
    _say("A few users' snapshots (the three with the most posts):")
    header = ("handle", "date", "followers", "following", "posts", "likes", "replies", "quotes", "reposts")
    rows = [tuple(str(v) for v in row) for row in top]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    _say("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        _say("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    config = demo_dir / "demo.env"
    config.write_text(f"ETL_DATA_DIR={demo_dir}\n", encoding="utf-8")
    _say()
    _say("Look around the demo data:")
    _say(f"  bin/etl --config {config} status --date {run_dates[-1]}")
    if sample:
        _say(f"  bin/etl --config {config} report {sample[0]} --png {sample[0]}.png")
    _say()
    took = time.monotonic() - started
    lagging = expect.lagging()
    if lagging:
        posts = sum(len(uris) for uris in lagging.values())
        _say(
            f"Not yet seen, by design: {posts} new post(s) of {len(lagging)} user(s) whose postsCount did not "
            "move because an older post was deleted the same day; the periodic window read "
            f"(every {settings.full_read_days} days) or the next postsCount change picks them up."
        )
    if verdict.ok:
        _say(
            f"Verified against the simulator's truth: {verdict.snapshots:,} snapshots over {days} days, "
            f"{verdict.posts:,} stored posts and {verdict.users:,} user rows are all equal. ({took:.0f}s)"
        )
        return
    for line in verdict.mismatches[:20]:
        _say(f"  MISMATCH {line}")
    raise EtlError(f"{len(verdict.mismatches)} differences from the simulator's truth (first ones above)")


def fetch_json_post(url: str) -> dict:
    """POST to the simulator's admin API."""
    import json
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=60) as response:
        return json.load(response)
