"""A process pool for shards: spawn context, one task per process, deaths noticed, graceful stop."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger("etl.pool")

# How long stopped workers get to roll back and record their shard before they are killed.
STOP_GRACE_SECONDS = 15.0
# How often the parent looks at its children when nothing else wakes it.
POLL_SECONDS = 0.5


@dataclass
class Outcome:
    """How one task ended: its result message, or how its process died, or that it never started."""

    key: Hashable
    result: Any = None
    exitcode: int | None = None
    started: bool = True
    pid: int | None = None  # the worker process's pid, once started

    @property
    def died(self) -> str | None:
        """Why the process ended without a result, or None."""
        if not self.started or self.result is not None:
            return None
        code = self.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (killed: out of memory, or by an operator)" if -code == signal.SIGKILL else ""
            return f"worker process ended by {name}{hint} before reporting"
        return f"worker process exited with status {code} before reporting"


def _child(target: Callable[[Any, Connection], None], task: Any, channel: Connection) -> None:
    try:
        target(task, channel)
    finally:
        channel.close()


class ShardPool:
    """Runs `target(task, channel)` for each task in its own spawned process, `workers` at a time.

    A fresh process per shard gives each its own connections, session and event loop, and returns
    all of its memory when the shard ends. Workers talk back over a one-way pipe: ("progress",
    key, data) messages go to `on_message`; the ("result", key, data) message is the outcome.
    A process that dies without a result (SIGKILL, out of memory) is reported, not waited for.
    """

    def __init__(
        self,
        workers: int,
        target: Callable[[Any, Connection], None],
        *,
        on_message: Callable[[tuple], None] | None = None,
        grace: float = STOP_GRACE_SECONDS,
    ):
        self.workers = max(1, workers)
        self.target = target
        self.on_message = on_message or (lambda message: None)
        self.grace = grace
        self._ctx = multiprocessing.get_context("spawn")
        self._stop_requested = False
        self._running: dict[Hashable, tuple[Any, Connection]] = {}

    def request_stop(self) -> None:
        """Start no more tasks and ask the running ones to stop (safe from a signal handler)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def run(self, tasks: Iterable[tuple[Hashable, Any]]) -> dict[Hashable, Outcome]:
        """Run every task (until stopped); the outcome of each, started or not."""
        pending = deque(tasks)
        outcomes: dict[Hashable, Outcome] = {}
        results: dict[Hashable, Any] = {}
        kill_at: float | None = None
        try:
            while pending or self._running:
                while pending and len(self._running) < self.workers and not self._stop_requested:
                    key, task = pending.popleft()
                    self._start(key, task)
                if self._stop_requested and kill_at is None:
                    kill_at = time.monotonic() + self.grace
                    self._signal_all(signal.SIGTERM)
                if kill_at is not None and time.monotonic() >= kill_at:
                    log.warning("workers still running %.0fs after the stop request: killing them", self.grace)
                    self._signal_all(signal.SIGKILL)
                    kill_at = float("inf")
                if self._stop_requested:
                    for key, _task in pending:
                        outcomes[key] = Outcome(key, started=False)
                    pending.clear()
                handles = [conn for _, conn in self._running.values()] + [p.sentinel for p, _ in self._running.values()]
                if handles:
                    wait(handles, timeout=POLL_SECONDS)
                self._drain(results)
                for key, (proc, conn) in list(self._running.items()):
                    if proc.is_alive():
                        continue
                    self._drain_one(conn, results)
                    proc.join()
                    conn.close()
                    del self._running[key]
                    outcomes[key] = Outcome(key, results.get(key), proc.exitcode, pid=proc.pid)
        finally:
            # Never leave a child behind, whatever happened here.
            for proc, conn in self._running.values():
                if proc.is_alive():
                    proc.kill()
                proc.join(5)
                conn.close()
            self._running.clear()
        return outcomes

    def _start(self, key: Hashable, task: Any) -> None:
        parent_end, child_end = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(self.target, task, child_end), name=f"etl-worker-{key}")
        proc.start()
        child_end.close()
        self._running[key] = (proc, parent_end)
        log.debug("started worker pid %d for %s", proc.pid, key)

    def _signal_all(self, signum: int) -> None:
        for proc, _ in self._running.values():
            if proc.is_alive() and proc.pid:
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    pass

    def _drain(self, results: dict) -> None:
        for _, conn in self._running.values():
            self._drain_one(conn, results)

    def _drain_one(self, conn: Connection, results: dict) -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "result":
                    results[message[1]] = message[2]
                else:
                    self.on_message(message)
        except (EOFError, OSError):
            pass  # the child closed its end (normally, or by dying)
