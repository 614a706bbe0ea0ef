"""Whole runs against the simulator: requests per user, end-to-end speed, CPU split, memory."""

from __future__ import annotations

import math
import statistics
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from etl import run as runmod
from etl.config import Settings
from etl.sim.process import SimProcess
from tests.bench.common import (
    Stopwatch,
    Table,
    bench_database,
    cpu_seconds_of,
    register_directly,
    settings_for,
    sim_get,
    sim_now,
    sim_post,
)

METHODS = (
    "app.bsky.actor.getProfiles",
    "app.bsky.actor.getProfile",
    "app.bsky.feed.getAuthorFeed",
    "app.bsky.feed.getPosts",
)
SHORT = {m: m.rsplit(".", 1)[1] for m in METHODS}
TRUTH_THREADS = 8


@dataclass
class Day:
    """One measured run."""

    report: runmod.RunReport
    wall: float
    requests: dict[str, int]
    sim_cpu: float
    run_at: datetime
    truths: dict[str, dict] = field(default_factory=dict)

    @property
    def selected(self) -> int:
        return self.report.totals()["users_selected"]

    def cpu(self, key: str) -> float | None:
        values = [r.stats.get("cpu", {}).get(key) for r in self.report.shard_reports.values()]
        if any(v is None for v in values):
            return None
        return sum(values)

    def peak_rss_mb(self) -> list[float]:
        return [r.stats.get("peak_rss_kb", 0) / 1024 for r in self.report.shard_reports.values()]


def fewest_pages(items: int, items_since: int, page: int = 100) -> int:
    """Feed pages a reader needs: down to the first item older than `since`, or to the end."""
    if items > items_since:
        return math.ceil((items_since + 1) / page)
    return max(1, math.ceil(items / page))


def _truths(url: str, dids: list[str], since: datetime | None = None) -> dict[str, dict]:
    query = f"&since={urllib.parse.quote(since.isoformat().replace('+00:00', 'Z'))}" if since else ""

    def one(did: str) -> dict:
        return sim_get(f"{url}/_sim/truth?did={urllib.parse.quote(did, safe='')}{query}")

    with ThreadPoolExecutor(TRUTH_THREADS) as pool:
        return dict(zip(dids, pool.map(one, dids), strict=True))


class SimulatedDays:
    """A simulator process, a private database, registered accounts: run day after day."""

    def __init__(self, users: int, seed: int, name: str, *, shards: int = 8, max_feed_items: int | None = None, **sim_options):
        self.users, self.seed, self.name, self.shards = users, seed, name, shards
        self.max_feed_items = max_feed_items  # register only accounts with at most this many feed items
        self.sim_options = sim_options

    def __enter__(self) -> SimulatedDays:
        self._sim = SimProcess(users=self.users, seed=self.seed, **self.sim_options)
        self.sim = self._sim.__enter__()
        self._db = bench_database(self.name)
        self.conninfo = self._db.__enter__()
        offset, self.accounts = 0, []
        while offset is not None:
            page = sim_get(f"{self.sim.url}/_sim/users?offset={offset}&limit=10000")
            self.accounts += page["users"]
            offset = page.get("next_offset")
        if self.max_feed_items is not None:
            truths = self.truths()
            self.accounts = [a for a in self.accounts if truths[a["did"]]["feed_items"] <= self.max_feed_items]
        register_directly(self.conninfo, self.accounts)
        return self

    def __exit__(self, *exc) -> None:
        self._db.__exit__(*exc)
        self._sim.__exit__(*exc)

    def settings(self, **overrides) -> Settings:
        return settings_for(self.conninfo, self.sim.url, **overrides)

    def run(self, settings: Settings | None = None, **options) -> Day:
        """One run at the simulator's current time; its requests counted by the simulator."""
        settings = settings or self.settings()
        sim_post(self.sim.url + "/_sim/stats/reset")
        sim_cpu = cpu_seconds_of(self.sim.process.pid)
        run_at = sim_now(self.sim.url)
        opts = {"shards": self.shards, "as_of": run_at}
        opts.update(options)
        with Stopwatch() as watch:
            report = runmod.execute(settings, runmod.RunOptions(**opts), install_signals=False)
        stats = sim_get(self.sim.url + "/_sim/stats")
        return Day(report, watch.seconds, stats["requests"], cpu_seconds_of(self.sim.process.pid) - sim_cpu, run_at)

    def advance(self) -> None:
        sim_post(self.sim.url + "/_sim/advance?days=1")

    def truths(self, since: datetime | None = None) -> dict[str, dict]:
        return _truths(self.sim.url, [a["did"] for a in self.accounts], since)


@dataclass
class Minimum:
    """The fewest requests the simulator's truth allows for one day, by endpoint."""

    by_method: dict[str, int]
    naive: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_method.values())


def minimum_day1(selected: int, truths: dict[str, dict], cap: int) -> Minimum:
    """Day 1: every profile, a probe per inactive account, every history down to the cap.

    For a history longer than the cap the pages needed depend on where the cap falls among the
    feed's items (reposts interleave), so the bound counts only own posts: a lower bound.
    """
    inactive = sum(t["status"] != "active" for t in truths.values())
    pages = sum(
        max(1, math.ceil(min(t["feed_items"], cap) / 100)) for t in truths.values() if t["status"] == "active"
    )
    return Minimum(
        {METHODS[0]: math.ceil(selected / 25), METHODS[1]: inactive, METHODS[2]: pages, METHODS[3]: 0}
    )


def minimum_day2(selected: int, before: dict[str, dict], after: dict[str, dict], window_start: datetime) -> Minimum:
    """Day 2 with perfect knowledge of what changed since day 1.

    A user whose posts changed (a new post, or a deleted one inside the window), or who was not
    active on day 1, needs the fewest feed pages that read the window. A user with unchanged
    posts and posts inside the window needs those posts' fresh counts: getPosts, 25 per call,
    shared across users. Everybody else needs nothing beyond getProfiles. The naive strategy
    reads every active user's window from the feed.
    """
    from etl.validate import post_time

    inactive = sum(t["status"] != "active" for t in after.values())
    pages = naive_pages = refresh = 0
    for did, now in after.items():
        if now["status"] != "active":
            continue
        window_pages = fewest_pages(now["feed_items"], now["feed_items_since"])
        naive_pages += window_pages
        then = before.get(did, {})
        old = {p["uri"] for p in then.get("posts", ())}
        new = {p["uri"] for p in now["posts"]}
        in_window = [p for p in now["posts"] if post_time(p["createdAt"], p["indexedAt"]) >= window_start]
        deleted_in_window = any(
            post_time(p["createdAt"], p["indexedAt"]) >= window_start and p["uri"] not in new
            for p in then.get("posts", ())
        )
        if then.get("status") != "active" or new - old or deleted_in_window:
            pages += window_pages
        elif in_window:
            refresh += len(in_window)
    profiles = math.ceil(selected / 25)
    minimum = Minimum(
        {METHODS[0]: profiles, METHODS[1]: inactive, METHODS[2]: pages, METHODS[3]: math.ceil(refresh / 25)}
    )
    minimum.naive = profiles + inactive + naive_pages
    return minimum


def requests_table(days: list[tuple[str, Day, Minimum]]) -> Table:
    table = Table(
        "Requests per user",
        ["day", "selected users", *[SHORT[m] for m in METHODS], "total", "per user", "minimum", "vs minimum"],
    )
    for label, day, minimum in days:
        total = sum(day.requests.get(m, 0) for m in METHODS)
        table.add(
            label,
            day.selected,
            *[day.requests.get(m, 0) for m in METHODS],
            total,
            f"{total / max(day.selected, 1):.3f}",
            f"{minimum.total:,} ({', '.join(f'{SHORT[m]} {n:,}' for m, n in minimum.by_method.items() if n)})",
            f"{total / max(minimum.total, 1):.3f}x",
        )
    return table


def cpu_table(title: str, days: list[tuple[str, Day]]) -> Table:
    table = Table(
        title,
        ["day", "users", "wall s", "users/s", "API client", "JSON parsing", "staging", "SQL (server)", "simulator"],
    )
    for label, day in days:
        per_k = 1000 / max(day.selected, 1)
        total, parse, stage, sql = (day.cpu(k) for k in ("total", "parse", "stage", "sql"))
        client = None if total is None else total - (parse or 0) - (stage or 0)
        table.add(
            label,
            day.selected,
            day.wall,
            day.selected / day.wall,
            *[("n/a" if v is None else f"{v * per_k:.2f}") for v in (client, parse, stage, sql)],
            f"{day.sim_cpu * per_k:.2f}",
        )
    table.notes.append(
        "CPU seconds per 1,000 users. API client = the worker processes' CPU less JSON decoding and "
        "staging (it includes validation, HTTP and the event loop); SQL = the PostgreSQL backends "
        "serving the workers; simulator = the simulated AppView's process, for scale."
    )
    return table


def memory_row(label: str, day: Day) -> list:
    rss = day.peak_rss_mb()
    return [label, day.selected, f"{max(rss):.0f}", f"{statistics.median(rss):.0f}"]


def window_start(day: Day, settings: Settings) -> datetime:
    return day.run_at - timedelta(days=settings.post_window_days)
