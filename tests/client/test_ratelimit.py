"""The per-machine rate limiter with real processes and files; bounds are loose, never tight."""

from __future__ import annotations

import asyncio
import fcntl
import math
import multiprocessing
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from etl.appview import AppView
from etl.ratelimit import RateLimiter, _State, _store, default_state_path
from tests.client import limiter_worker

SPAWN = multiprocessing.get_context("spawn")


def in_processes(path: Path, rate: float, processes: int, tasks: int, duration: float, before_go=None):
    """Run acquire_until in spawned processes from a common start; (start, [(pid, times)])."""
    ready, out, go, start = SPAWN.Queue(), SPAWN.Queue(), SPAWN.Event(), SPAWN.Value("d", 0.0)
    args = (str(path), rate, tasks, ready, go, start, duration, out)
    procs = [SPAWN.Process(target=limiter_worker.acquire_until, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        start.value = time.time() + 0.2  # everyone is up: begin together shortly
        if before_go is not None:
            before_go(start.value)
        go.set()
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return start.value, results


def take(limiter: RateLimiter, count: int) -> float:
    """Seconds `count` sequential acquires took."""

    async def go():
        for _ in range(count):
            await limiter.acquire()

    began = time.monotonic()
    asyncio.run(go())
    return time.monotonic() - began


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "budget.bin"


@pytest.mark.slow
def test_processes_sharing_a_state_file_share_one_budget(path):
    rate, duration = 20.0, 1.5
    _, results = in_processes(path, rate, processes=3, tasks=3, duration=duration)
    counts = [len(times) for _, times in results]
    total = sum(counts)
    # One budget: about rate*duration in all (each process alone would take that much itself).
    assert total <= rate * duration + 2, counts
    assert total >= rate * duration * 0.5, counts
    assert all(count >= 1 for count in counts), counts


@pytest.mark.slow
def test_a_pause_set_by_one_process_holds_back_the_others(path):
    pause = 0.6

    def pause_everyone(start_at: float) -> None:
        limiter = RateLimiter(20, path)
        limiter.pause_until(start_at + pause)
        limiter.close()

    start_at, results = in_processes(path, 20.0, processes=2, tasks=2, duration=1.0, before_go=pause_everyone)
    times = [t for _, ts in results for t in ts]
    assert times, "no acquisitions after the pause"
    assert min(times) >= start_at + pause - 0.01


def test_a_waiter_already_sleeping_for_its_slot_honours_a_later_pause(path):
    async def go():
        mine, other_process = RateLimiter(2, path), RateLimiter(2, path)  # separate descriptors
        await mine.acquire()
        waiting = asyncio.create_task(mine.acquire())  # its slot is ~0.5 s away
        await asyncio.sleep(0.05)
        until = time.time() + 0.8
        other_process.pause_until(until)
        await waiting
        return until, time.time()

    until, done = asyncio.run(go())
    assert done >= until - 0.01


def test_one_process_is_paced_at_the_rate(path):
    elapsed = take(RateLimiter(50, path), 26)  # 25 intervals of 20 ms after the first slot
    assert elapsed >= 0.45
    assert elapsed < 5


def test_rate_zero_does_not_pace(path):
    assert take(RateLimiter(0, path), 300) < 2


def test_rate_zero_still_honours_a_pause(path):
    limiter = RateLimiter(0, path)
    limiter.pause_until(time.time() + 0.2)
    assert take(limiter, 1) >= 0.19


def test_a_pause_is_capped_so_a_hostile_retry_after_cannot_stall_a_run(path):
    limiter = RateLimiter(10, path)
    limiter.pause_until(time.time() + 10**6)
    assert limiter.state()["pause_until"] <= time.time() + 901
    limiter.pause_until(math.inf)  # ignored, not stored
    assert math.isfinite(limiter.state()["pause_until"])


def test_pauses_only_ever_lengthen(path):
    limiter = RateLimiter(10, path)
    later = time.time() + 5
    limiter.pause_until(later)
    limiter.pause_until(later - 3)
    assert limiter.state()["pause_until"] == pytest.approx(later)


# --- the server's advertised budget ------------------------------------------------------------


def headers(remaining: int | str, reset: float | str, date: float | None = None, limit: int = 3000) -> dict:
    found = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(reset)}
    found["RateLimit-Policy"] = f"{limit};w=300"
    if date is not None:
        found["Date"] = formatdate(date, usegmt=True)
    return found


def test_an_exhausted_budget_pauses_until_the_reset(path):
    limiter = RateLimiter(10, path)
    now = time.time()
    limiter.observe(headers(0, int(now) + 5, date=now))
    assert limiter.state()["pause_until"] == pytest.approx(now + 5, abs=1.5)


def test_a_low_budget_is_spread_until_the_reset(path):
    limiter = RateLimiter(10, path)
    limiter.observe(headers(15, 10))  # delta-seconds form: 15 left (5 after our reserve) for 10 s
    state = limiter.state()
    assert state["spread_interval"] == pytest.approx(2.0, abs=0.2)
    assert state["spread_until"] == pytest.approx(time.time() + 10, abs=1)
    take(limiter, 1)
    assert limiter.state()["next_slot"] == pytest.approx(time.time() + 2.0, abs=0.3)


def test_a_plentiful_budget_leaves_the_pace_alone(path):
    limiter = RateLimiter(10, path)
    limiter.observe(headers(2999, 60))
    assert limiter.state()["spread_interval"] == 0
    assert limiter.state()["pause_until"] == 0


def test_the_reset_is_read_against_the_servers_date_so_clock_skew_cancels(path):
    limiter = RateLimiter(10, path)
    now = time.time()
    server_clock = now - 3600  # the server's clock is an hour behind ours
    limiter.observe(headers(0, int(server_clock) + 5, date=server_clock))
    assert limiter.state()["pause_until"] == pytest.approx(now + 5, abs=1.5)


def test_a_late_answer_from_the_same_window_does_not_raise_the_budget(path):
    limiter = RateLimiter(10, path)
    now = time.time()
    limiter.observe(headers(100, int(now) + 200, date=now))
    limiter.observe(headers(500, int(now) + 200, date=now))
    assert limiter.state()["remaining"] == 100
    limiter.observe(headers(3000, int(now) + 500, date=now))  # a new window
    assert limiter.state()["remaining"] == 3000


@pytest.mark.parametrize(
    "found",
    [{}, {"RateLimit-Remaining": "5"}, {"RateLimit-Remaining": "x", "RateLimit-Reset": "10"}, headers(0, time.time() - 60)],
)
def test_missing_garbled_or_past_budget_headers_change_nothing(path, found):
    limiter = RateLimiter(10, path)
    before = limiter.state()
    limiter.observe(found)
    assert limiter.state() == before


def test_rate_zero_does_not_spread_but_still_pauses_at_an_exhausted_budget(path):
    limiter = RateLimiter(0, path)
    limiter.observe(headers(15, 10))
    assert limiter.state()["spread_interval"] == 0
    limiter.observe(headers(3, 10))
    assert limiter.state()["pause_until"] > time.time() + 8


# --- robustness --------------------------------------------------------------------------------


def test_a_corrupt_or_truncated_state_file_reads_as_fresh_state(path):
    path.write_bytes(os.urandom(64))
    limiter = RateLimiter(10, path)
    assert take(limiter, 1) < 1
    path.write_bytes(b"")
    other = RateLimiter(10, path)
    assert take(other, 1) < 1
    assert path.stat().st_size == 64


def test_times_absurdly_far_ahead_are_ignored(path):
    limiter = RateLimiter(10, path)
    now = time.time()
    _store(limiter._mapping(), _State(next_slot=now + 10**7, pause_until=now + 10**7))
    assert take(limiter, 1) < 1


@pytest.mark.slow
def test_a_process_killed_while_holding_the_lock_does_not_block_the_others(path):
    ready = SPAWN.Queue()
    holder = SPAWN.Process(target=limiter_worker.hold_lock_forever, args=(str(path), ready))
    holder.start()
    try:
        ready.get(timeout=60)
        probe = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.kill()
        holder.join(timeout=10)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel released it
        fcntl.flock(probe, fcntl.LOCK_UN)
        os.close(probe)
    finally:
        if holder.is_alive():
            holder.kill()
    assert take(RateLimiter(10, path), 2) < 2


def test_rate_must_be_finite_and_not_negative():
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(ValueError):
            RateLimiter(bad)


def test_state_files_are_per_appview_host_and_port():
    public = default_state_path("https://public.api.bsky.app")
    assert public.name == "dopplersky-ratelimit-public.api.bsky.app.bin"
    assert public.parent == (Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else public.parent)
    assert default_state_path("http://127.0.0.1:8081") != default_state_path("http://127.0.0.1:8082")
    assert "/" not in default_state_path("http://[::1]:80/x").name


def test_the_client_budgets_per_appview_when_given_no_limiter(client_settings):
    client = AppView(client_settings)
    assert client.limiter.path == default_state_path(client_settings.bluesky_base_url)
    assert client.limiter.rate == client_settings.rate_limit
