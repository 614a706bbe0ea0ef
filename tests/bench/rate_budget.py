"""The rate budget: how much of an AppView's per-IP limit a run uses, and how it takes 429s."""

from __future__ import annotations

from tests.bench.common import Table
from tests.bench.runs import METHODS, Day, SimulatedDays

LATENCY_MS = 100


# The concurrency scan runs one worker through small batches of accounts with short histories:
# a long history is read page after page, so one such account would make the run as long as
# its pages times the latency, whatever the concurrency.
SCAN_BATCH_USERS = 20
SCAN_MAX_FEED_ITEMS = 300
# The budget cases run as `etl run` does by default: 8 shards dealt out to 2 workers, so a worker
# whose shard is done takes the next while the other reads a long history. With one shard per
# worker, the run ended on one worker paging through one account's history alone (about 10
# requests/s at 100 ms each) and lost a tenth of the budget to that tail. The concurrency scan
# has one worker, so one shard (no process start between shards).
BUDGET_SHARDS = 8
SCAN_SHARDS = 1


def _first_day(
    users: int, seed: int, server_rate: float, window: int, configured: float, concurrency: int, workers: int,
    shards: int, max_feed_items: int | None = None, **settings,
) -> Day:  # fmt: skip
    """A first (backfill) day on a fresh simulator and database, the server limiting per IP."""
    limit = int(server_rate * window)
    with SimulatedDays(
        users, seed, "bench_rate", shards=shards, max_feed_items=max_feed_items,
        latency_ms=LATENCY_MS, rate_limit=limit, rate_window=window,
    ) as days:  # fmt: skip
        return days.run(days.settings(rate_limit=configured, concurrency=concurrency, max_workers=workers, **settings))


def bench_rate(
    users: int, seed: int, rate: float, window: int, concurrency_steps: list[int], scan_users: int,
    max_feed_items: int | None = None,
) -> Table:  # fmt: skip
    """Budget use at the configured rate, 429 handling below it, throughput by concurrency."""
    table = Table(
        f"Rate budget: simulator with {LATENCY_MS} ms latency and a per-IP limit",
        ["case", "server limit/s", "ETL_RATE_LIMIT", "shards", "workers x concurrency", "requests", "seconds",
         "requests/s", "budget used", "429s", "failed users"],
    )  # fmt: skip
    main = {"max_feed_items": max_feed_items} if max_feed_items else {}
    cases = [
        ("configured = server limit", users, rate, 2, 8, BUDGET_SHARDS, main),
        ("server limit below configured", users, rate * 0.75, 2, 8, BUDGET_SHARDS, main),
    ]
    cases += [
        ("throughput by concurrency", scan_users, rate, 1, step, SCAN_SHARDS, {"batch_users": SCAN_BATCH_USERS, "max_feed_items": SCAN_MAX_FEED_ITEMS})
        for step in concurrency_steps
    ]
    results = []
    for case, n, server_rate, workers, concurrency, shards, extra in cases:
        day = _first_day(n, seed, server_rate, window, rate, concurrency, workers, shards, **extra)
        requests = sum(day.requests.get(m, 0) for m in METHODS)
        per_s = requests / day.wall
        table.add(
            case, f"{server_rate:g} ({int(server_rate * window)}/{window}s)", f"{rate:g}", shards, f"{workers} x {concurrency}",
            requests, day.wall, per_s, f"{100 * per_s / server_rate:.0f}%", day.report.api.rate_limited,
            day.report.totals()["users_failed"],
        )  # fmt: skip
        results.append((case, per_s / server_rate, day.report.api.rate_limited, day.report.totals()["users_failed"]))
    table.notes.append(
        f"Each row is a first day (history backfill) of fresh simulated users on a fresh database; every "
        f"request waits {LATENCY_MS} ms at the simulator, whose fixed-window limit is per client IP like the "
        "real AppView's. Budget used = requests / (run seconds x the server's limit per second); the run's "
        f"seconds include starting the workers and writing the last batch. The concurrency rows use one "
        f"worker, batches of {SCAN_BATCH_USERS} users, and only accounts with at most {SCAN_MAX_FEED_ITEMS} "
        "feed items (3 pages)."
    )
    table.results = results  # type: ignore[attr-defined]
    return table
