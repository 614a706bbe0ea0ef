"""CPU accounting for the performance figures: this process, and a local PostgreSQL backend."""

from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine, or None if it cannot be read.

    Used for the database backend of a connection: when the server is elsewhere, the pid names
    nothing here (or not a postgres process) and the figure is simply not reported.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, _, tail = f.read().rpartition(")")
    except OSError:
        return None
    if "postgres" not in head:
        return None
    fields = tail.split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_kb() -> int:
    """This process's own peak resident set size (kB).

    Linux's VmHWM, not getrusage's ru_maxrss: a spawned worker is forked before it executes a
    fresh interpreter, and ru_maxrss keeps the high-water mark across that exec, so it would
    report the parent's peak (a benchmark holding the simulator's truth: 1.5 GB) as the
    worker's. VmHWM belongs to the process's current address space only.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


class BackendClock:
    """CPU seconds PostgreSQL spent serving some connections, summed over their lifetimes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.known = True
        self._open: dict[int, float] = {}

    def start(self, backend_pid: int) -> None:
        cpu = process_cpu(backend_pid)
        if cpu is None:
            self.known = False
        else:
            self._open[backend_pid] = cpu

    def stop(self, backend_pid: int) -> None:
        began = self._open.pop(backend_pid, None)
        cpu = process_cpu(backend_pid) if began is not None else None
        if began is not None and cpu is not None:
            self.seconds += cpu - began

    def total(self) -> float | None:
        """Seconds so far, open connections included; None when a backend could not be read."""
        if not self.known:
            return None
        running = sum((process_cpu(pid) or began) - began for pid, began in self._open.items())
        return self.seconds + running
