"""`python -m tests.bench [--quick] [--only PART ...]`: measure, print the tables, check the targets."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tests.bench.common import Table, results_dir
from tests.bench.db_throughput import bench_posts, bench_snapshots
from tests.bench.rate_budget import bench_rate
from tests.bench.runs import (
    METHODS,
    SimulatedDays,
    cpu_table,
    memory_row,
    minimum_day1,
    minimum_day2,
    requests_table,
    window_start,
)


@dataclass(frozen=True)
class Sizes:
    requests_users: int
    e2e_users: int
    posts: int
    per_row_sample: int
    snapshot_users: int
    runs: int
    rate_users: int
    rate_scan_users: int
    rate_window: int
    concurrency_steps: tuple[int, ...]
    # Toy runs leave out long histories: one would set the run's length (page after page).
    rate_max_feed_items: int | None = None


FULL = Sizes(10_000, 100_000, 200_000, 20_000, 100_000, 3, 600, 300, 30, (1, 2, 4, 8, 16))
# Toy sizes: every part runs and prints its table (the test suite runs this; figures mean little).
QUICK = Sizes(80, 120, 2_000, 400, 1_000, 1, 12, 8, 2, (2,), rate_max_feed_items=300)
SEED = 1
RATE = 20.0


class Targets:
    """The issue's targets, checked as the figures come in."""

    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []

    def check(self, ok: bool, text: str) -> None:
        self.lines.append((ok, text))

    def markdown(self) -> str:
        return "\n".join(f"- {'met' if ok else 'MISSED'}: {text}" for ok, text in self.lines)

    @property
    def all_met(self) -> bool:
        return all(ok for ok, _ in self.lines)


def part_requests(sizes: Sizes, targets: Targets, tables: list[Table], memory: dict) -> None:
    with SimulatedDays(sizes.requests_users, SEED, "bench_requests") as days:
        settings = days.settings()
        first = days.run(settings)
        before = days.truths()
        minimum1 = minimum_day1(first.selected, before, settings.backfill_max_posts)
        days.advance()
        second = days.run(settings)
        after = days.truths(window_start(second, settings))
        minimum2 = minimum_day2(second.selected, before, after, window_start(second, settings))
    table = requests_table([("1 (backfill)", first, minimum1), ("2 (steady state)", second, minimum2)])
    total2 = sum(second.requests.get(m, 0) for m in METHODS)
    saving = 1 - total2 / max(minimum2.naive, 1)
    table.notes.append(
        f"{sizes.requests_users:,} simulated users (seed {SEED}). Naive strategy on day 2 (every user's window "
        f"from the feed, at least one page each): {minimum2.naive:,} requests; this run used {total2:,}, "
        f"{100 * saving:.0f}% fewer. Day 1's minimum is a lower bound (histories longer than the backfill cap)."
    )
    tables.append(table)
    ratio = total2 / max(minimum2.total, 1)
    targets.check(ratio <= 1.10, f"day-2 requests {ratio:.3f}x the minimum the truth allows (target <= 1.10x)")
    memory["small"] = first


def part_db(sizes: Sizes, targets: Targets, tables: list[Table]) -> None:
    posts = bench_posts(sizes.posts, sizes.posts, sizes.per_row_sample, sizes.runs)
    snaps = bench_snapshots(sizes.snapshot_users, 2, sizes.per_row_sample, sizes.runs)
    tables += [posts, snaps]
    for name, table in (("posts", posts), ("snapshots", snaps)):
        r = table.ratios  # type: ignore[attr-defined]
        targets.check(r["executemany"] >= 2, f"{name}: {r['executemany']:.1f}x executemany (target >= 2x)")
        targets.check(r["per_row"] >= 15, f"{name}: {r['per_row']:.1f}x per-row (target >= 15x)")


def part_e2e(sizes: Sizes, targets: Targets, tables: list[Table], memory: dict) -> None:
    with SimulatedDays(sizes.e2e_users, SEED, "bench_e2e") as days:
        first = days.run()
        days.advance()
        second = days.run()
    tables.append(
        cpu_table(
            f"End to end: {sizes.e2e_users:,} simulated users, --shards 8, simulator in its own process, no latency",
            [("1 (backfill)", first), ("2 (steady state)", second)],
        )
    )
    for label, day in (("day 1", first), ("day 2", second)):
        failed = day.report.totals()["users_failed"]
        targets.check(day.report.status == "completed" and failed == 0, f"end to end {label}: {day.report.status}, {failed} failed users")
    memory["large"] = first


def part_memory(targets: Targets, tables: list[Table], memory: dict) -> None:
    if "small" not in memory or "large" not in memory:
        return
    table = Table("Memory: peak RSS of the worker processes (--shards 8)", ["day-1 run", "users", "max MB", "median MB"])
    small, large = memory["small"], memory["large"]
    table.rows.append(memory_row("requests benchmark", small))
    table.rows.append(memory_row("end-to-end benchmark", large))
    ratio = max(large.peak_rss_mb()) / max(small.peak_rss_mb())
    table.notes.append(f"Ratio of the largest worker's peak RSS: {ratio:.2f} (target < 1.2).")
    tables.append(table)
    targets.check(ratio < 1.2, f"worker peak RSS {ratio:.2f}x from {small.selected:,} to {large.selected:,} users (target < 1.2)")


def part_rate(sizes: Sizes, targets: Targets, tables: list[Table]) -> None:
    table = bench_rate(
        sizes.rate_users, SEED, RATE, sizes.rate_window, list(sizes.concurrency_steps), sizes.rate_scan_users,
        max_feed_items=sizes.rate_max_feed_items,
    )  # fmt: skip
    tables.append(table)
    results = table.results  # type: ignore[attr-defined]
    _, used, limited, failed = results[0]
    targets.check(used >= 0.9 and limited == 0, f"budget used {100 * used:.0f}% with {limited} 429s (target >= 90%, none)")
    _, _, limited, failed = results[1]
    targets.check(failed == 0, f"server limit below configured: {limited} 429s honoured, {failed} failed users (target 0)")


PARTS = ("requests", "db", "e2e", "rate")


def measure(sizes: Sizes, parts: list[str]) -> tuple[list[Table], Targets]:
    """Run the chosen parts at these sizes: their tables and the targets' verdicts."""
    targets, tables, memory = Targets(), [], {}
    for part in parts:
        print(f"[bench] {part} ...", file=sys.stderr, flush=True)
        if part == "requests":
            part_requests(sizes, targets, tables, memory)
        elif part == "db":
            part_db(sizes, targets, tables)
        elif part == "e2e":
            part_e2e(sizes, targets, tables, memory)
        elif part == "rate":
            part_rate(sizes, targets, tables)
    part_memory(targets, tables, memory)
    return tables, targets


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy sizes: proves every part works")
    parser.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    tables, targets = measure(sizes, args.only)
    took = time.monotonic() - started
    header = (
        f"`make bench{' QUICK=1' if args.quick else ''}` on {datetime.now(UTC):%Y-%m-%d} "
        f"({platform.machine()}, {platform.python_version()}, {took / 60:.0f} min)"
    )
    text = "\n\n".join([header, *(t.markdown() for t in tables), "### Targets", targets.markdown()]) + "\n"
    print(text)
    name = "quick.md" if args.quick else "latest.md"
    (results_dir() / name).write_text(text, encoding="utf-8")
    return 0 if targets.all_met or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
