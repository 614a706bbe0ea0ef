"""What the client returns, and the per-process counters the parent adds up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from etl.validate import Post, Profile


@dataclass
class ProfilesResult:
    """Profiles keyed by DID, and the asked DIDs the AppView left out (in input order)."""

    profiles: dict[str, Profile]
    omitted: list[str]


@dataclass
class FeedResult:
    """A user's own posts read from the author feed, and why reading stopped."""

    posts: list[Post]
    complete: bool  # True: every post down to `since` (or to the end) was read
    pages: int
    stop: str  # end, since, repeated_cursor, page_cap, post_cap or error
    error: Exception | None = None


@dataclass
class Counters:
    """What one process's client did; the parent adds workers' counters up with merge()."""

    requests: dict[str, int] = field(default_factory=dict)  # attempts sent, by XRPC method
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    bytes_received: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed attempts, by kind
    throttle_seconds: float = 0.0  # time spent waiting for the machine's rate limiter
    parse_seconds: float = 0.0  # CPU seconds spent decoding JSON answers

    def as_dict(self) -> dict[str, Any]:
        """A plain, picklable, JSON-able copy."""
        return {
            "requests": dict(self.requests),
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "bytes_received": self.bytes_received,
            "errors": dict(self.errors),
            "throttle_seconds": self.throttle_seconds,
            "parse_seconds": self.parse_seconds,
        }

    def merge(self, other: Counters | Mapping[str, Any]) -> Counters:
        """Add another process's counters (a Counters or its as_dict()) into these."""
        data = other.as_dict() if isinstance(other, Counters) else other
        for name, count in dict(data.get("requests", {})).items():
            self.requests[name] = self.requests.get(name, 0) + count
        for name, count in dict(data.get("errors", {})).items():
            self.errors[name] = self.errors.get(name, 0) + count
        self.retries += data.get("retries", 0)
        self.rate_limited += data.get("rate_limited", 0)
        self.bytes_received += data.get("bytes_received", 0)
        self.throttle_seconds += data.get("throttle_seconds", 0.0)
        self.parse_seconds += data.get("parse_seconds", 0.0)
        return self

    @property
    def total_requests(self) -> int:
        """Attempts sent, all methods together."""
        return sum(self.requests.values())

    def count_error(self, kind: str) -> None:
        """One more failed attempt of this kind."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
