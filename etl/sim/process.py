"""Run the simulator as a separate process (`python -m etl simulate ...`) and find its URL.

Benchmarks want the simulator on its own CPU, away from the ETL's event loop:

    with SimProcess(users=100_000, seed=1, rate_limit=3000, rate_window=300) as sim:
        run_the_etl(base_url=sim.url)

The child prints `Simulated AppView listening on http://127.0.0.1:PORT` once it serves; `start`
waits for that line, `stop` sends SIGTERM and waits for a clean exit (SIGKILL after a timeout).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

READY = re.compile(r"^Simulated AppView listening on (http://127\.0\.0\.1:\d+)\s*$")
REPO_ROOT = Path(__file__).resolve().parents[2]


def simulate_args(
    users: int = 1000,
    seed: int = 0,
    *,
    port: int = 0,
    start: date | None = None,
    day: int = 0,
    rate_limit: int = 0,
    rate_window: float = 300.0,
    latency_ms: float = 0.0,
    faults: dict[str, float] | Iterable[str] = (),
    fault_attempts: int = 2,
    activity: float = 1.0,
) -> list[str]:
    """The `etl simulate` arguments for these options."""
    args = ["simulate", "--users", str(users), "--seed", str(seed), "--port", str(port), "--day", str(day)]
    if start is not None:
        args += ["--start", start.isoformat()]
    if rate_limit:
        args += ["--rate-limit", str(rate_limit), "--rate-window", str(rate_window)]
    if latency_ms:
        args += ["--latency-ms", str(latency_ms)]
    items = [f"{k}={v}" for k, v in faults.items()] if isinstance(faults, dict) else list(faults)
    for item in items:
        args += ["--fault", item]
    if fault_attempts != 2:
        args += ["--fault-attempts", str(fault_attempts)]
    if activity != 1.0:
        args += ["--activity", str(activity)]
    return args


class SimProcess:
    """A simulator child process; a context manager that starts and stops it."""

    def __init__(self, users: int = 1000, seed: int = 0, *, stderr: int | None = None, **options) -> None:
        self.args = [sys.executable, "-m", "etl", *simulate_args(users, seed, **options)]
        self.stderr = stderr
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start the child and return its base URL once it listens."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env
        )
        assert self.process.stdout is not None
        line = _read_line(self.process.stdout, timeout)
        match = READY.match(line.decode(errors="replace"))
        if match is None:
            self.stop()
            raise RuntimeError(f"the simulator did not start (its first line: {line!r})")
        self.url = match[1]
        return self.url

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read_line(stream, timeout: float) -> bytes:
    """One line from a pipe, or whatever came before the timeout or EOF."""
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.split(b"\n", 1)[0]
