"""Process bodies for the rate limiter tests (importable by spawn-context children)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from typing import Any

from etl.ratelimit import RateLimiter


def acquire_until(path: str, rate: float, tasks: int, ready: Any, go: Any, start: Any, duration: float, out: Any) -> None:
    """Report ready, wait for go, then take slots with `tasks` waiters for `duration` seconds.

    Puts (pid, [times of acquisitions inside the window]) on `out`.
    """
    ready.put(os.getpid())
    if not go.wait(60):
        out.put((os.getpid(), None))
        return
    start_at = start.value
    stop_at = start_at + duration

    async def main() -> list[float]:
        limiter = RateLimiter(rate, path)
        times: list[float] = []

        async def waiter() -> None:
            while True:
                await limiter.acquire()
                now = time.time()
                if now >= stop_at:
                    return
                times.append(now)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(waiter() for _ in range(tasks)))
        limiter.close()
        return times

    out.put((os.getpid(), asyncio.run(main())))


def hold_lock_forever(path: str, ready: Any) -> None:
    """Take the state file's lock, say so, and never let go (the test kills us)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.put(os.getpid())
    time.sleep(600)
