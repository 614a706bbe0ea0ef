"""Fixtures for the AppView client tests, and the aioresponses shim for aiohttp 3.14."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import CallbackResult, aioresponses

from etl.appview import AppView
from etl.config import Settings, load_settings
from etl.ratelimit import RateLimiter

T = TypeVar("T")


# --- aioresponses shim -------------------------------------------------------------------------
# aiohttp 3.14 added a required keyword-only `stream_writer` to ClientResponse.__init__ (it reads
# only `.output_size` when the request is already sent); aioresponses 0.7.9 does not pass it
# (pnuckowski/aioresponses#289, fix pending in #288). aioresponses builds its responses from the
# module-level name `ClientResponse` unless a test passes its own response_class, so a subclass
# that supplies a dummy writer, bound to that name, repairs every mocked response. setdefault
# keeps it harmless once aioresponses passes the argument itself.
class _StreamWriterShimResponse(aiohttp.ClientResponse):
    """A ClientResponse that tolerates aioresponses not passing `stream_writer`."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
    aioresponses_core.ClientResponse = _StreamWriterShimResponse


# --- helpers -----------------------------------------------------------------------------------
BASE = "https://appview.test"
POST = "app.bsky.feed.post"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh loop (no pytest-asyncio needed)."""
    return asyncio.run(coro)


def xrpc(method: str) -> re.Pattern[str]:
    """A URL pattern for one XRPC method of the test AppView, any query."""
    return re.compile(rf"^{re.escape(BASE)}/xrpc/{re.escape(method)}(\?.*)?$")


def did_n(n: int) -> str:
    """A valid, distinct did:plc for test user n."""
    return f"did:plc:{n:024d}"


def uri_of(did: str, rkey: str) -> str:
    """The AT-URI of a post."""
    return f"at://{did}/{POST}/{rkey}"


def profile_view(did: str, handle: str | None = None, **fields: Any) -> dict[str, Any]:
    """A profileViewDetailed as the AppView answers it."""
    view = {
        "did": did,
        "handle": handle or f"user{did[-6:]}.bsky.social",
        "displayName": "Someone",
        "avatar": "https://cdn.bsky.app/img/avatar/plain/x/y@jpeg",
        "followersCount": 10,
        "followsCount": 20,
        "postsCount": 30,
        "indexedAt": "2026-01-01T00:00:00.000Z",
    }
    view.update(fields)
    return view


def post_view(
    did: str,
    rkey: str,
    created: str = "2026-03-01T12:00:00.000Z",
    indexed: str | None = None,
    **counts: Any,
) -> dict[str, Any]:
    """A postView as the AppView answers it."""
    view = {
        "uri": uri_of(did, rkey),
        "cid": "bafyreib2rxk3rh6kzwq",
        "author": {"did": did, "handle": "someone.test"},
        "record": {"$type": POST, "text": "hello", "createdAt": created},
        "replyCount": 1,
        "repostCount": 2,
        "likeCount": 3,
        "quoteCount": 4,
        "indexedAt": indexed or created,
    }
    view.update(counts)
    return view


def item(post: dict[str, Any], reason: dict[str, Any] | None = None) -> dict[str, Any]:
    """A feedViewPost."""
    return {"post": post} if reason is None else {"post": post, "reason": reason}


def repost_by(did: str, when: str) -> dict[str, Any]:
    """A reasonRepost by `did` at `when`."""
    return {"$type": "app.bsky.feed.defs#reasonRepost", "by": {"did": did, "handle": "x.test"}, "indexedAt": when}


PIN = {"$type": "app.bsky.feed.defs#reasonPin"}


def reply(payload: Any = None, status: int = 200, body: str | bytes = "", headers: dict | None = None) -> CallbackResult:
    """One mocked answer for a callback."""
    return CallbackResult(status=status, payload=payload, body=body, headers=headers)


class FakeAppView:
    """Routes of a mocked AppView that record what the server saw (decoded query values)."""

    def __init__(self, mocked: aioresponses) -> None:
        self.mocked = mocked
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []  # (method, URL, request kwargs)

    def route(self, method: str, handler: Callable[[Any], Any]) -> None:
        """Answer every call of `method` with handler(url) (a CallbackResult)."""

        async def callback(url: Any, **kwargs: Any) -> Any:
            self.calls.append((method, url, kwargs))
            return await handler(url) if inspect.iscoroutinefunction(handler) else handler(url)

        self.mocked.get(xrpc(method), callback=callback, repeat=True)

    def urls(self, method: str | None = None) -> list[Any]:
        """The URLs the server saw, in order."""
        return [url for name, url, _ in self.calls if method is None or name == method]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def client_settings(tmp_path: Path) -> Settings:
    """Defaults, a fake AppView, no client pacing, tiny backoffs, three attempts."""
    return load_settings(environ={}, cwd=tmp_path).replace(
        bluesky_base_url=BASE,
        rate_limit=0,
        backoff_base=0.001,
        backoff_max=0.005,
        max_attempts=3,
        data_dir=str(tmp_path / "etl-data"),
    )


class RecordingLimiter(RateLimiter):
    """A real limiter on a private file that also records what the client told it."""

    def __init__(self, rate: float, path: Path) -> None:
        super().__init__(rate, path)
        self.acquired = 0
        self.pauses: list[float] = []
        self.observed: list[dict[str, str]] = []

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()

    def pause_until(self, unix_ts: float) -> None:
        self.pauses.append(unix_ts)
        super().pause_until(unix_ts)

    def observe(self, headers: Any) -> None:
        self.observed.append(dict(headers))
        super().observe(headers)


@pytest.fixture
def limiter(tmp_path: Path) -> Iterator[RecordingLimiter]:
    """A limiter on this test's own state file (never the machine's real budget)."""
    limiter = RecordingLimiter(0, tmp_path / "ratelimit.bin")
    yield limiter
    limiter.close()


@pytest.fixture
def make_client(client_settings: Settings, limiter: RecordingLimiter) -> Callable[..., AppView]:
    """AppView(settings with overrides, limiter=the test's limiter)."""

    def make(**overrides: Any) -> AppView:
        settings = client_settings.replace(**overrides) if overrides else client_settings
        return AppView(settings, limiter=limiter)

    return make


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses active for the test; unmatched requests fail as connection errors."""
    with aioresponses() as m:
        yield m


@pytest.fixture
def server(mocked: aioresponses) -> FakeAppView:
    """A FakeAppView on the mocked transport."""
    return FakeAppView(mocked)
