"""How many requests per second a simulator process sustains, per XRPC method.

    python -m etl.sim.loadtest --users 100000 --seconds 10 --concurrency 8

Starts `etl simulate` in its own process (as benchmarks do), then for each scenario keeps
`concurrency` requests in flight for `seconds` and prints requests/s, items/s, latency
percentiles, and the simulator's own CPU time per request (`sim_capacity_per_s` = requests per
CPU-second of the simulator: its throughput when the client is not the bottleneck). Scenarios: getProfiles with 25 actors, getAuthorFeed with limit 100 (first pages of
users who have posts), and deep getAuthorFeed paging (every page of heavy posters).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable

import aiohttp

from etl.sim.process import SimProcess


async def _scenario(
    session: aiohttp.ClientSession, name: str, make: Callable[[random.Random], tuple[str, list]], seconds: float, concurrency: int
) -> dict:
    latencies: list[float] = []
    items = 0
    deadline = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        nonlocal items
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            path, params = make(rng)
            started = time.perf_counter()
            async with session.get(path, params=params) as response:
                body = await response.json()
                assert response.status == 200, body
            latencies.append(time.perf_counter() - started)
            items += len(body.get("profiles", body.get("feed", ())))

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "scenario": name,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "items_per_s": round(items / elapsed),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2),
        "requests": len(latencies),
    }


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far, from /proc; 0 when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


def _with_cpu(result: dict, cpu: float) -> dict:
    """Add the simulator's own CPU cost per request (the client's share left out)."""
    result["sim_cpu_ms_per_request"] = round(1000 * cpu / max(1, result["requests"]), 2)
    result["sim_capacity_per_s"] = round(result["requests"] / cpu, 1) if cpu else None
    return result


async def run(url: str, seconds: float, concurrency: int, pid: int | None = None) -> list[dict]:
    """Measure every scenario against a running simulator (process `pid`, for its CPU time)."""
    async with aiohttp.ClientSession(url) as session:
        users: list[dict] = []
        offset: int | None = 0
        while offset is not None:
            async with session.get("/_sim/users", params={"offset": offset, "limit": 10_000}) as response:
                page = await response.json()
            users += page["users"]
            offset = page.get("next_offset")
        active = [u["did"] for u in users if u["status"] == "active"]

        def profiles(rng: random.Random) -> tuple[str, list]:
            start = rng.randrange(0, max(1, len(active) - 25))
            return "/xrpc/app.bsky.actor.getProfiles", [("actors", did) for did in active[start : start + 25]]

        def first_page(rng: random.Random) -> tuple[str, list]:
            return "/xrpc/app.bsky.feed.getAuthorFeed", [("actor", rng.choice(active)), ("limit", "100")]

        results = []
        for name, make in (("getProfiles x25", profiles), ("getAuthorFeed limit=100 (first page, any user)", first_page)):
            cpu = cpu_seconds(pid)
            result = await _scenario(session, name, make, seconds, concurrency)
            results.append(_with_cpu(result, cpu_seconds(pid) - cpu))
        # Deep paging: users with full pages, following cursors the way a backfill does.
        heavy = []
        for did in active[:3000]:
            async with session.get("/_sim/truth", params={"did": did}) as response:
                if (await response.json())["feed_items"] >= 1000:
                    heavy.append(did)
            if len(heavy) >= 20:
                break
        if heavy:
            cpu = cpu_seconds(pid)
            result = await _deep(session, heavy, seconds, concurrency)
            results.append(_with_cpu(result, cpu_seconds(pid) - cpu))
        return results


async def _deep(session: aiohttp.ClientSession, heavy: list[str], seconds: float, concurrency: int) -> dict:
    """Each worker pages through whole feeds of heavy posters, cursor after cursor."""
    latencies: list[float] = []
    items = 0
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal items
        did, cursor = heavy[n % len(heavy)], None
        while time.monotonic() < deadline:
            params = [("actor", did), ("limit", "100")] + ([("cursor", cursor)] if cursor else [])
            started = time.perf_counter()
            async with session.get("/xrpc/app.bsky.feed.getAuthorFeed", params=params) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - started)
            items += len(body["feed"])
            cursor = body.get("cursor")
            if cursor is None:
                did = heavy[(heavy.index(did) + concurrency) % len(heavy)]

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "scenario": "getAuthorFeed limit=100 (deep paging, heavy posters)",
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "items_per_s": round(items / elapsed),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2),
        "requests": len(latencies),
    }


def main() -> None:
    """Command line: start a simulator process, measure, print one line per scenario."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with SimProcess(users=args.users, seed=args.seed) as sim:
        assert sim.url is not None
        pid = sim.process.pid if sim.process else None
        for result in asyncio.run(run(sim.url, args.seconds, args.concurrency, pid)):
            print(result, flush=True)


if __name__ == "__main__":
    main()
