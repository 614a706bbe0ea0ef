"""Fault injection and the per-IP rate limit of the simulated AppView.

Configuration (`bin/etl simulate --fault KIND=RATE --fault-attempts N`, or at runtime the JSON body
of `POST /_sim/faults`, which replaces the whole configuration and restarts attempt counting;
`GET /_sim/faults` reads it back in the same shape):

    {
      "rates": {"500": 0.05, "timeout": 0.01, "hostile": 0.02},
      "attempts": 2,
      "targets": {
        "did:plc:...": {"feed": "500", "profile": "reset", "posts": "503",
                        "status": "deactivated", "data": ["hostile", "bad_counts"]}
      }
    }

Kinds and what RATE means
    Transport (RATE = chance per request attempt):
      `500` JSON InternalServerError; `502` an HTML page from a load balancer (text/html);
      `503` JSON NotEnoughResources; `timeout` no answer until the client hangs up (at most an
      hour); `reset` the connection is aborted with a TCP RST, no response; `truncated` status 200
      with the JSON body cut in half (Content-Length matches the cut body).
    Feed pages (RATE = chance per distinct page request, or per user for endless_feed):
      `short_pages` fewer items than asked yet a cursor (1 in 5 of them empty, still with a cursor;
      no item is ever skipped); `repeat_cursor` the page's cursor is the one it was given (a client
      that follows it loops forever); `endless_feed` the user's feed never ends: past the last item,
      empty pages that always carry a fresh cursor; `dup_posts` the page starts with the item that
      ended the previous page.
    Data (RATE = chance per user for profile fields, per post for post fields):
      `hostile` 10 KB names, NUL characters, lone surrogates (sent as `\\ud800` escapes),
      SQL-looking strings, 1 MB post texts; `bad_counts` counts missing, negative, float or string.

Which attempt fails (reproducible, so retries can be tested)
    A request's identity is its method plus its query string with parameters sorted by name. The
    simulator counts how many times it has seen each identity since the configuration was last set
    (attempt 0, 1, 2, ...). Transport fault KIND strikes attempt n iff
    `n < attempts` and `hash(seed, KIND, identity, n) < rate` (kinds checked in the order reset,
    timeout, 500, 502, 503, truncated; the first that strikes wins). So with the default
    `attempts` = 2 a client that tries three times always gets through. Feed and data faults are
    part of the served data: they depend on hash(seed, KIND, identity or DID or post URI) only, so
    asking again gives the same answer.

Targets (tests): for one DID, `feed` / `profile` / `posts` name a transport kind that strikes on
every attempt of getAuthorFeed for that actor / getProfile(s) naming it / getPosts naming one of its
posts (`feed` may also name a feed kind, applied to every page); `status` overrides the account's
status from now on (active, deactivated, takendown, not_found); `data` forces data faults for the
user and all their posts. Targets change only that user's own answers (others' reposts of their
posts are not re-filtered).

Rate limit: a fixed window per client IP (all loopback clients share one budget), like the real
service: the window opens with the first request and lasts `window` seconds; every XRPC answer
carries RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (absolute unix seconds) and
RateLimit-Policy (`N;w=W`); past the limit the answer is 429 with Retry-After and
`{"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from etl.sim.ids import Hasher

TRANSPORT_KINDS = ("reset", "timeout", "500", "502", "503", "truncated")
FEED_KINDS = ("short_pages", "repeat_cursor", "endless_feed", "dup_posts")
DATA_KINDS = ("hostile", "bad_counts")
KINDS = TRANSPORT_KINDS + FEED_KINDS + DATA_KINDS
TARGET_STATUSES = ("active", "deactivated", "takendown", "not_found")
_TARGET_KEYS = ("feed", "profile", "posts", "status", "data")
# Attempt counts are kept per request identity; past this many identities the table starts over,
# which only makes a long benchmark's faults a little less predictable, never unbounded in memory.
_MAX_IDENTITIES = 1_000_000


@dataclass(frozen=True)
class Target:
    """Faults aimed at one DID."""

    feed: str | None = None
    profile: str | None = None
    posts: str | None = None
    status: str | None = None
    data: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The target as the admin endpoint shows it (unset fields left out)."""
        out: dict = {key: getattr(self, key) for key in ("feed", "profile", "posts", "status") if getattr(self, key)}
        if self.data:
            out["data"] = list(self.data)
        return out


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates, the attempts they may strike, and per-DID targets."""

    rates: dict[str, float] = field(default_factory=dict)
    attempts: int = 2
    targets: dict[str, Target] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: object) -> FaultConfig:
        """Parse the admin JSON shape; ValueError says what is wrong."""
        if not isinstance(body, dict):
            raise ValueError("the fault configuration must be a JSON object")
        unknown = set(body) - {"rates", "attempts", "targets"}
        if unknown:
            raise ValueError(f"unknown keys: {sorted(unknown)}; expected rates, attempts, targets")
        rates_in = body.get("rates") or {}
        if not isinstance(rates_in, dict):
            raise ValueError("rates must be an object of KIND: RATE")
        rates = {str(kind): _rate(kind, value) for kind, value in rates_in.items()}
        attempts = body.get("attempts", 2)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError("attempts must be an integer >= 1")
        targets_in = body.get("targets") or {}
        if not isinstance(targets_in, dict):
            raise ValueError("targets must be an object of DID: {feed, profile, posts, status, data}")
        return cls(rates, attempts, {str(did): _target(did, spec) for did, spec in targets_in.items()})

    @classmethod
    def from_specs(cls, specs: Iterable[str], attempts: int = 2) -> FaultConfig:
        """Parse command-line `KIND=RATE` items."""
        rates: dict[str, float] = {}
        for spec in specs:
            kind, sep, value = spec.partition("=")
            if not sep:
                raise ValueError(f"--fault {spec!r}: expected KIND=RATE, e.g. 500=0.05")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"--fault {spec!r}: RATE must be a number between 0 and 1") from None
            rates[kind.strip()] = _rate(kind.strip(), number)
        return cls.from_json({"rates": rates, "attempts": attempts})

    def to_json(self) -> dict:
        """The configuration in the admin JSON shape."""
        return {
            "rates": dict(self.rates),
            "attempts": self.attempts,
            "targets": {did: target.to_json() for did, target in self.targets.items()},
        }


def _rate(kind: object, value: object) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"rate of {kind} must be a number between 0 and 1")
    return float(value)


def _target(did: str, spec: object) -> Target:
    if not isinstance(spec, dict) or set(spec) - set(_TARGET_KEYS):
        raise ValueError(f"target {did}: expected an object with keys among {', '.join(_TARGET_KEYS)}")
    for key, allowed in (("feed", TRANSPORT_KINDS + FEED_KINDS), ("profile", TRANSPORT_KINDS), ("posts", TRANSPORT_KINDS)):
        if spec.get(key) is not None and spec[key] not in allowed:
            raise ValueError(f"target {did}: {key} must be one of {', '.join(allowed)}")
    if spec.get("status") is not None and spec["status"] not in TARGET_STATUSES:
        raise ValueError(f"target {did}: status must be one of {', '.join(TARGET_STATUSES)}")
    data = spec.get("data") or []
    if not isinstance(data, list) or any(kind not in DATA_KINDS for kind in data):
        raise ValueError(f"target {did}: data must be a list among {', '.join(DATA_KINDS)}")
    return Target(spec.get("feed"), spec.get("profile"), spec.get("posts"), spec.get("status"), tuple(data))


class Faults:
    """Fault decisions for one configuration (a new configuration gets a new instance)."""

    def __init__(self, config: FaultConfig, seed: object) -> None:
        self.config = config
        self._hash = Hasher(f"{seed}/faults")
        self._seen: dict[str, int] = {}
        self._transport = [(kind, config.rates[kind]) for kind in TRANSPORT_KINDS if config.rates.get(kind)]
        self.has_targets = bool(config.targets)
        self.has_data = any(config.rates.get(kind) for kind in DATA_KINDS) or any(
            target.data for target in config.targets.values()
        )

    def attempt(self, identity: str) -> int:
        """Count one more request with this identity; returns its attempt number (0 first)."""
        if not self._transport:
            return 0
        if len(self._seen) >= _MAX_IDENTITIES:
            self._seen.clear()
        seen = self._seen.get(identity, 0)
        self._seen[identity] = seen + 1
        return seen

    def transport(self, identity: str, attempt: int, dids: Iterable[str] = (), scope: str = "") -> str | None:
        """The transport fault (or, for the feed scope, a targeted feed kind) to apply, if any."""
        if self.has_targets and scope:
            for did in dids:
                target = self.config.targets.get(did)
                kind = getattr(target, scope) if target else None
                if kind in TRANSPORT_KINDS:
                    return kind
        if attempt >= self.config.attempts:
            return None
        for kind, rate in self._transport:
            if self._hash.u(kind, identity, attempt) < rate:
                return kind
        return None

    def feed(self, kind: str, identity: str, did: str) -> bool:
        """Whether a feed-page fault applies to this page request (endless_feed: to this user)."""
        target = self.config.targets.get(did) if self.has_targets else None
        if target is not None and target.feed == kind:
            return True
        rate = self.config.rates.get(kind)
        if not rate:
            return False
        return self._hash.u(kind, did if kind == "endless_feed" else identity) < rate

    def data(self, kind: str, key: str, did: str) -> bool:
        """Whether data fault `kind` applies to a user (key = DID) or a post (key = URI)."""
        if not self.has_data:
            return False
        target = self.config.targets.get(did) if self.has_targets else None
        if target is not None and kind in target.data:
            return True
        rate = self.config.rates.get(kind)
        return bool(rate) and self._hash.u(kind, key) < rate

    def pick(self, *parts: object) -> int:
        """A deterministic 64-bit choice (which hostile string, which short length, ...)."""
        return self._hash.h64(*parts)

    def status(self, did: str) -> str | None:
        """A status forced on this DID by a target, if any."""
        if not self.has_targets:
            return None
        target = self.config.targets.get(did)
        return target.status if target else None


class RateLimiter:
    """Fixed-window request budget per client IP."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit, self.window, self._clock = limit, window, clock
        self._windows: dict[str, tuple[float, int]] = {}

    def to_json(self) -> dict:
        """{"limit", "window"} as the admin endpoint shows it."""
        return {"limit": self.limit, "window": self.window}

    def check(self, client: str) -> tuple[bool, dict[str, str]]:
        """Count a request; (allowed, headers to send, Retry-After included when refused)."""
        now = self._clock()
        start, count = self._windows.get(client, (0.0, 0))
        if count == 0 or now >= start + self.window:
            start, count = now, 0
        count += 1
        self._windows[client] = (start, count)
        reset = start + self.window
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.limit - count)),
            "RateLimit-Reset": str(math.ceil(reset)),
            "RateLimit-Policy": f"{self.limit};w={self.window:g}",
        }
        if count > self.limit:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
            return False, headers
        return True, headers


class Stats:
    """Request, status and fault counters behind `GET /_sim/stats`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        self.requests: Counter[str] = Counter()
        self.status_codes: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rate_limited = 0

    def to_json(self) -> dict:
        """The admin JSON shape."""
        return {
            "requests": dict(self.requests),
            "status_codes": dict(self.status_codes),
            "rate_limited": self.rate_limited,
            "faults": dict(self.faults),
        }


# Hostile strings: each is something real clients have sent or a classic injection probe.
HOSTILE_NAMES = (
    lambda: "A" * 10_240,
    lambda: "nul\u0000inside\u0000name",
    lambda: "lone \ud800 surrogate \udfff",
    lambda: "'); DROP TABLE users; --",
    lambda: "@bsky.app",
    lambda: "\u202eevil\u202c right-to-left override",
    lambda: "🦋" * 3000,
    lambda: "Z̷̢̛̗̬a̸̡̯l̶̰g̵̣̈o̴" * 200,
)

HOSTILE_TEXTS = (
    lambda: "x" * 1_048_576,
    lambda: "text with NUL \u0000 in the middle",
    lambda: "lone surrogates \ud800 and \udc00",
    lambda: "'); DROP TABLE posts; -- Robert'); DROP TABLE students;--",
    lambda: "<script>alert(1)</script>",
    lambda: "\u0000" * 100,
    lambda: "🦋" * 20_000,
)
