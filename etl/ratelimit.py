"""One AppView request budget per machine, shared by every process through a small mapped file.

The public AppView limits requests per IP address, so every worker process of a machine (and a
second `etl run` on it) must draw from one budget. The budget lives in a 64-byte file, mapped
with mmap and guarded by flock:

- next_slot: the time the next request may start (GCRA, a leaky bucket handed out centrally:
  each acquire takes max(now, next_slot) and moves next_slot on by 1/rate, so a process that
  stops asking simply leaves its share to the others);
- pause_until: nobody starts a request before this (a 429's Retry-After, or an exhausted
  server-advertised budget);
- spread_interval/spread_until: a slower pace the server's RateLimit-* headers call for;
- remaining/reset_at: the server's last advertised budget, to ignore answers arriving late.

The lock is held only while a few doubles are read and written (microseconds, never across an
await), and the kernel releases flock when a process dies, so a crash at any point leaves at
worst one wasted slot. A checksum guards against a write torn by such a crash.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import mmap
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

log = logging.getLogger("etl.ratelimit")

T = TypeVar("T")

_MAGIC = b"DSRL"  # tells our state from anything else found at the path (e.g. an old file)
# Bump when the layout changes: a file in the old layout then reads as fresh state.
_VERSION = 1
# magic, version, next_slot, pause_until, spread_interval, spread_until, remaining, reset_at.
_LAYOUT = struct.Struct("<4sI6d")
_CRC = struct.Struct("<I")
_SIZE = 64  # the layout (56 bytes) and its CRC-32 (4 bytes), rounded up
assert _LAYOUT.size + _CRC.size <= _SIZE

# A stored time further ahead of the clock than this is corruption or a wall-clock jump, never a
# plan: the longest legitimate wait is a pause (_MAX_PAUSE) plus a queue of waiters behind it.
_MAX_AHEAD = 3600.0
# The longest pause a server may impose on us. The public AppView's window is 5 minutes; a
# Retry-After beyond 15 is a broken or hostile server, and a daily job should fail its attempt
# and report rather than hang for hours.
_MAX_PAUSE = 900.0
# Requests granted a slot but still in flight when the server counted its Remaining (about one
# second of traffic at the default 10/s); we stop short of the advertised budget by this many.
_RESERVE = 10
# RateLimit-Reset is absolute unix seconds on the AppView; a value below this (2001-09-09) can
# only be the IETF draft's delta-seconds form, so we accept both.
_EPOCH_THRESHOLD = 1e9
# Date has one-second resolution, so two answers of one window can disagree on its reset by a
# second or so; within this tolerance they describe the same window.
_SAME_WINDOW = 2.0


@dataclass(slots=True)
class _State:
    next_slot: float = 0.0
    pause_until: float = 0.0
    spread_interval: float = 0.0
    spread_until: float = 0.0
    remaining: float = -1.0  # -1: no advertised budget seen
    reset_at: float = 0.0


def default_state_path(base_url: str) -> Path:
    """The state file of one AppView: per host and port, in /dev/shm when the machine has it."""
    parts = urlsplit(base_url)
    host = parts.hostname or "default"
    try:
        port = parts.port
    except ValueError:
        port = None
    name = re.sub(r"[^a-z0-9.-]", "_", f"{host}-{port}" if port else host)
    shm = Path("/dev/shm")
    # /dev/shm is RAM-backed and wiped at boot: no stale budget outlives the machine's uptime.
    directory = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return directory / f"dopplersky-ratelimit-{name}.bin"


class RateLimiter:
    """A per-machine request budget of `rate` requests/s (0: no pacing, but pauses still apply)."""

    def __init__(self, rate: float, path: str | os.PathLike[str] | None = None) -> None:
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be a finite number >= 0, not {rate!r}")
        self.rate = float(rate)
        self.path = Path(path) if path is not None else default_state_path("https://public.api.bsky.app")
        self.waited = 0.0  # seconds this process spent waiting for slots and pauses
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._pid = 0

    # --- the public operations ------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for this machine's next free request slot."""
        while True:
            start = self._update(self._take_slot)
            delay = start - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
                self.waited += delay
            # A pause that another process set while we slept (a 429 it saw) applies to us too;
            # one set before our slot was computed is already in `start`.
            if self._update(lambda state, now: state.pause_until) <= start:
                return

    def pause_until(self, unix_ts: float) -> None:
        """Let no process of this machine start a request before `unix_ts`."""
        if not math.isfinite(unix_ts):
            return

        def change(state: _State, now: float) -> None:
            state.pause_until = max(state.pause_until, min(unix_ts, now + _MAX_PAUSE))

        self._update(change)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the server's advertised budget (RateLimit-Remaining/-Reset) to avoid a 429."""
        remaining = _number(headers.get("RateLimit-Remaining"))
        reset = _number(headers.get("RateLimit-Reset"))
        if remaining is None or reset is None:
            return
        now = time.time()
        if reset < _EPOCH_THRESHOLD:
            reset_at = now + reset
        else:
            # Reset is on the server's clock; measured against its own Date header, our clock's
            # skew cancels out (to Date's one-second resolution).
            server_now = http_date_to_unix(headers.get("Date"))
            reset_at = now + (reset - server_now) if server_now is not None else reset
        if reset_at <= now:
            return  # that window is over; the next answer will describe the new one
        reset_at = min(reset_at, now + _MAX_PAUSE)
        self._update(lambda state, now: self._follow_budget(state, now, remaining, reset_at))

    def state(self) -> dict[str, float]:
        """The shared state as it is now (for logs and tests)."""
        state = self._update(lambda state, now: _State(*astuple(state)))
        return {name: getattr(state, name) for name in _State.__slots__}

    def close(self) -> None:
        """Unmap and close the state file (reopened on the next use)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- decisions, run under the lock -----------------------------------------------------------

    def _take_slot(self, state: _State, now: float) -> float:
        if self.rate == 0:
            return max(now, state.pause_until)
        start = max(now, state.next_slot, state.pause_until)
        interval = 1.0 / self.rate
        if start < state.spread_until:
            interval = max(interval, state.spread_interval)
        state.next_slot = start + interval
        return start

    def _follow_budget(self, state: _State, now: float, remaining: float, reset_at: float) -> None:
        same_window = abs(state.reset_at - reset_at) <= _SAME_WINDOW
        if same_window and 0 <= state.remaining < remaining:
            return  # an answer that left the server before the last one we saw: stale
        state.remaining = remaining
        state.reset_at = reset_at
        usable = remaining - _RESERVE
        left = reset_at - now
        if usable <= 0:
            state.pause_until = max(state.pause_until, reset_at)
            state.spread_interval = state.spread_until = 0.0
        elif self.rate > 0 and usable < self.rate * left:
            # At our own pace the budget would run out before the reset: spread what is left.
            state.spread_interval = left / usable
            state.spread_until = reset_at
        else:
            state.spread_interval = state.spread_until = 0.0

    # --- the shared file -------------------------------------------------------------------------

    def _update(self, change: Callable[[_State, float], T]) -> T:
        mapping = self._mapping()
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held for microseconds, never across an await
        try:
            now = time.time()
            state = _load(mapping, now)
            before = astuple(state)
            result = change(state, now)
            if astuple(state) != before:
                _store(mapping, state)
            return result
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _mapping(self) -> mmap.mmap:
        # A forked child shares the parent's open file description, and so its flock: reopen.
        if self._map is not None and self._pid == os.getpid():
            return self._map
        self._map = None
        self._fd = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except PermissionError:
            # Another user's file: share nothing rather than fail (that user's runs and ours
            # then have separate budgets, which the warning says).
            fallback = self.path.with_name(f"{self.path.stem}-uid{os.getuid()}{self.path.suffix}")
            log.warning("cannot open rate limit state %s; using %s", self.path, fallback)
            self.path = fallback
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            mapping = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._map, self._pid = fd, mapping, os.getpid()
        return mapping


def _load(mapping: mmap.mmap, now: float) -> _State:
    """The stored state; fresh state when the file is new, of another layout, or torn."""
    raw = mapping[: _LAYOUT.size]
    (crc,) = _CRC.unpack_from(mapping, _LAYOUT.size)
    magic, version, *values = _LAYOUT.unpack(raw)
    if magic != _MAGIC or version != _VERSION or crc != zlib.crc32(raw):
        return _State()
    state = _State(*values)
    for name in ("next_slot", "pause_until", "spread_until", "reset_at"):
        value = getattr(state, name)
        if not math.isfinite(value) or value > now + _MAX_AHEAD:
            setattr(state, name, 0.0)
    if not math.isfinite(state.spread_interval) or not 0 <= state.spread_interval <= _MAX_PAUSE:
        state.spread_interval = state.spread_until = 0.0
    return state


def _store(mapping: mmap.mmap, state: _State) -> None:
    raw = _LAYOUT.pack(_MAGIC, _VERSION, *astuple(state))
    mapping[: _LAYOUT.size] = raw
    _CRC.pack_into(mapping, _LAYOUT.size, zlib.crc32(raw))


def _number(value: str | None) -> float | None:
    """A header's number (the first of a list), or None."""
    if value is None:
        return None
    try:
        number = float(str(value).split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def http_date_to_unix(value: str | None) -> float | None:
    """Unix seconds of an HTTP date (`Date`, `Retry-After`), or None when it is not one."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": HTTP dates are GMT by definition
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None
