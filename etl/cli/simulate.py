"""`etl simulate`: serve the simulated Bluesky AppView (etl.sim) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from datetime import UTC, datetime

import click

from etl.cli.options import CannotStart, ConfigurationError, common_options
from etl.logs import setup_logging


@click.command()
@click.option("--users", type=click.IntRange(min=1), default=1000, show_default=True, help="Accounts in the world.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same world.")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date of simulated day 0 (YYYY-MM-DD; default: today, UTC).",
)
@click.option("--day", type=click.IntRange(min=0), default=0, show_default=True, help="Simulated day to start on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="TCP port; 0 picks a free one.")
@click.option(
    "--rate-limit", type=click.IntRange(min=0), default=0, show_default=True, help="Requests per window per client IP (0 = off)."
)
@click.option(
    "--rate-window", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True, help="Rate-limit window in seconds."
)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Delay added to every XRPC answer.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND=RATE",
    help="Inject a fault (repeatable): 500, 502, 503, timeout, reset, truncated, short_pages, "
    "repeat_cursor, endless_feed, dup_posts, hostile, bad_counts.",
)
@click.option(
    "--activity",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale of everyone's posting volume (not the firehose accounts'), e.g. 0.2 for lighter benchmarks.",
)
@click.option(
    "--fault-attempts", type=click.IntRange(min=1), default=2, show_default=True, help="Transport faults strike only a request's first N attempts."
)
@common_options
def simulate(
    users: int,
    seed: int,
    start: datetime | None,
    day: int,
    port: int,
    rate_limit: int,
    rate_window: float,
    latency_ms: float,
    faults: tuple[str, ...],
    activity: float,
    fault_attempts: int,
) -> None:
    """Serve a simulated Bluesky AppView for tests, benchmarks and demos.

    Prints one line, "Simulated AppView listening on http://127.0.0.1:PORT", then serves until
    SIGINT or SIGTERM. The world is a pure function of --users, --seed and --start; admin
    endpoints under /_sim/ advance the clock, inject faults and tell the truth (etl/sim/server.py).

    Example:

    \b
        etl simulate --users 100000 --seed 7 --rate-limit 3000 --rate-window 300 --fault 500=0.01
    """
    from etl.sim.faults import FaultConfig
    from etl.sim.server import SimOptions

    state = click.get_current_context().find_root().ensure_object(dict)
    setup_logging("DEBUG" if state.get("verbose") else "WARNING", state.get("log_format") or "text")
    try:
        config = FaultConfig.from_specs(faults, fault_attempts)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    options = SimOptions(
        users=users,
        seed=seed,
        start=(start or datetime.now(UTC)).date(),
        day=day,
        rate_limit=rate_limit,
        rate_window=rate_window,
        latency_ms=latency_ms,
        faults=config.rates,
        fault_attempts=fault_attempts,
        activity=activity,
    )
    try:
        asyncio.run(_serve(options, port))
    except OSError as exc:
        raise CannotStart(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None


async def _serve(options, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    from etl.sim.server import make_app, start_site

    # The world's LRU caches hold millions of small objects; with the default thresholds the
    # cyclic GC rescans them so often that it halves throughput. They hold no cycles.
    gc.set_threshold(100_000, 50, 100)
    runner, bound = await start_site(make_app(options), port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Scripts and tests parse this line from the pipe, so it must leave now, not at exit.
    sys.stdout.write(f"Simulated AppView listening on http://127.0.0.1:{bound}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
