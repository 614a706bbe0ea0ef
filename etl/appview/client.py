"""The AppView client of one process: batching, paging, rate limiting and retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from etl import __version__
from etl.appview import wire
from etl.appview.errors import (
    ACTIVE,
    NOT_FOUND,
    AccountUnavailable,
    AppViewError,
    BatchFailed,
    RedirectError,
    ResponseTooLarge,
    RetriesExhausted,
    Transient,
    XrpcError,
    error_kind,
    unavailable_status,
)
from etl.appview.feed import build, collect_own_posts, feed_result
from etl.appview.results import Counters, FeedResult, ProfilesResult
from etl.ratelimit import RateLimiter, default_state_path
from etl.validate import DID_MAX, URI_MAX, Post, Profile, is_at_uri, is_did, post_from_view, profile_from_view

log = logging.getLogger("etl.appview")

# Names the project so AppView operators can tell who is calling (and whom to throttle).
USER_AGENT = f"dopplersky-workers/{__version__} aiohttp/{aiohttp.__version__}"
GET_PROFILE = "app.bsky.actor.getProfile"
GET_PROFILES = "app.bsky.actor.getProfiles"
GET_AUTHOR_FEED = "app.bsky.feed.getAuthorFeed"
GET_POSTS = "app.bsky.feed.getPosts"

BATCH = 25  # the lexicons' maxLength for getProfiles `actors` and getPosts `uris`; 26 is a 400
FEED_LIMIT = 100  # getAuthorFeed's largest page: the fewest requests per post read
# A feed page over max_response_bytes (posts with huge texts or embeds) is asked again, from the
# same cursor, for this many times fewer items; the next page goes back to FEED_LIMIT, since
# such pages are rare and small pages cost requests.
OVERSIZE_SHRINK = 4
RETRY_STATUSES = frozenset({500, 502, 503, 504})  # transient server and load balancer failures
# 429 answers a request may get before it gives up, per attempt it has for failures: with the
# default 5 attempts and the AppView's 5-minute window that is far longer than any storm our
# own processes make, and still an end when a server never lets us in.
RATE_LIMITED_ATTEMPTS_FACTOR = 10
READ_CHUNK = 64 * 1024  # bytes per read; the size cap is enforced per chunk, not after the fact


class AppView:
    """The AppView client of one process; use as `async with AppView(settings) as appview:`."""

    def __init__(
        self,
        settings: Any,
        *,
        limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = str(settings.bluesky_base_url).rstrip("/")
        self._own_limiter = limiter is None
        self.limiter = limiter or RateLimiter(settings.rate_limit, default_state_path(self.base_url))
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout, connect=settings.connect_timeout)
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.counters = Counters()

    async def __aenter__(self) -> AppView:
        if self._session is None:
            # Created here, inside the running loop that will use it. The pool never holds more
            # connections than we have requests in flight.
            connector = aiohttp.TCPConnector(limit=self.settings.concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers={"User-Agent": USER_AGENT}
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_limiter:
            self.limiter.close()

    # --- profiles and accounts ---------------------------------------------------------------

    async def get_profiles(self, dids: Iterable[str]) -> ProfilesResult:
        """Profiles of any number of DIDs (calls of 25, concurrent); raises BatchFailed on failures."""
        asked = list(dict.fromkeys(dids))
        valid = []
        for did in asked:
            if _askable_did(did):
                valid.append(did)
            else:
                # One malformed actor fails its whole call of 25 with a 400, so it is not sent;
                # no account can have it, so it counts as omitted (account_status: not_found).
                log.warning("not asking for invalid DID %s; counting it as omitted", wire.shown(did))
        profiles, failed, errors = await self._lookup(GET_PROFILES, "actors", "profiles", profile_from_view, valid)
        unanswered = set(failed)
        omitted = [did for did in asked if did not in profiles and did not in unanswered]
        result = ProfilesResult(profiles, omitted)
        if errors:
            # Unanswered DIDs are not "omitted" (that would read as gone): the caller decides.
            raise BatchFailed(GET_PROFILES, failed, errors, result)
        return result

    async def _lookup(self, method: str, param: str, field: str, builder, keys: list[str]) -> tuple[dict, list, list]:
        """Look keys up in concurrent calls of 25: (found by key, keys of failed calls, their errors)."""
        chunks = [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]
        answers = await _gather(self._lookup_call(method, param, field, builder, chunk) for chunk in chunks)
        found: dict[str, Any] = {}
        failed: list[str] = []
        errors: list[AppViewError] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if isinstance(answer, AppViewError):
                failed.extend(chunk)
                errors.append(answer)
            else:
                found.update(answer)
        return found, failed, errors

    async def _lookup_call(self, method: str, param: str, field: str, builder, keys: list[str]) -> dict[str, Any]:
        data = await self._call(method, [(param, key) for key in keys], require=field)
        wanted = set(keys)
        found: dict[str, Any] = {}
        for view in data[field]:
            item = build(builder, view)
            if item is None:
                continue
            key = item.did if isinstance(item, Profile) else item.uri
            if key not in wanted:
                log.warning("%s answered for %s, which was not asked; ignoring it", method.rsplit(".", 1)[1], key)
                continue
            found.setdefault(key, item)
        return found

    async def account_status(self, did: str) -> str:
        """active, not_found, deactivated or takendown (one getProfile call); other errors raise."""
        if not _askable_did(did):
            return NOT_FOUND  # no account can have a malformed DID
        try:
            await self._call(GET_PROFILE, [("actor", did)])
        except XrpcError as exc:
            status = unavailable_status(exc)
            if status is None:
                raise
            return status
        return ACTIVE

    async def profile(self, actor: str) -> Profile:
        """One profile by handle or DID (health checks); raises AccountUnavailable when gone."""
        try:
            data = await self._call(GET_PROFILE, [("actor", actor)])
        except XrpcError as exc:
            status = unavailable_status(exc)
            if status is None:
                raise
            raise AccountUnavailable(actor, status) from exc
        profile = build(profile_from_view, data)
        if profile is None:
            raise AppViewError(f"{GET_PROFILE}: unusable profile for {wire.shown(actor)}")
        return profile

    # --- posts -------------------------------------------------------------------------------

    async def author_feed(self, did: str, since: datetime | None, *, max_posts: int | None = None) -> FeedResult:
        """The user's own posts, newest first, read page by page until `since`, the end or a cap."""
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        if not _askable_did(did):
            raise AccountUnavailable(did, NOT_FOUND)
        posts: dict[str, Post] = {}
        used: set[str] = set()
        cursor: str | None = None
        pages = 0
        limit = FEED_LIMIT
        while True:
            params = [("actor", did), ("limit", str(limit)), ("filter", "posts_with_replies")]
            params.append(("includePins", "false"))
            if cursor is not None:
                params.append(("cursor", cursor))  # sent back verbatim: cursors are opaque
            try:
                page = await self._call(GET_AUTHOR_FEED, params, require="feed")
            except XrpcError as exc:
                status = unavailable_status(exc) if pages == 0 else None
                if status is not None:
                    raise AccountUnavailable(did, status) from exc
                return feed_result(did, posts, pages, "error", exc)
            except ResponseTooLarge as exc:
                if limit == 1:
                    return feed_result(did, posts, pages, "error", exc)
                limit = max(1, limit // OVERSIZE_SHRINK)
                log.warning("%s: page of %s too large; asking again for %d items", GET_AUTHOR_FEED, did, limit)
                continue
            except AppViewError as exc:
                return feed_result(did, posts, pages, "error", exc)
            limit = FEED_LIMIT
            pages += 1
            oldest = collect_own_posts(did, page["feed"], posts)
            next_cursor = page.get("cursor")

            if max_posts is not None and len(posts) > max_posts:
                return feed_result(did, dict(list(posts.items())[:max_posts]), pages, "post_cap")
            if next_cursor is None:
                return feed_result(did, posts, pages, "end")
            if not isinstance(next_cursor, str) or not next_cursor:
                error = AppViewError(f"{GET_AUTHOR_FEED}: unusable cursor {wire.shown(next_cursor)}")
                return feed_result(did, posts, pages, "error", error)
            if since is not None and oldest is not None and oldest < since:
                return feed_result(did, posts, pages, "since")
            if max_posts is not None and len(posts) >= max_posts:
                return feed_result(did, posts, pages, "post_cap")
            if next_cursor in used:
                return feed_result(did, posts, pages, "repeated_cursor")
            if pages >= self.settings.max_pages:
                return feed_result(did, posts, pages, "page_cap")
            used.add(next_cursor)
            cursor = next_cursor

    async def get_posts(self, uris: Iterable[str]) -> dict[str, Post]:
        """Current views of posts by URI (calls of 25, concurrent); deleted posts are absent."""
        asked = list(dict.fromkeys(uris))
        valid = [uri for uri in asked if isinstance(uri, str) and len(uri) <= URI_MAX and is_at_uri(uri)]
        if len(valid) != len(asked):
            # One malformed URI fails its whole call with a 400; no post can have one.
            log.warning("not asking for %d invalid post URIs (they count as deleted)", len(asked) - len(valid))
        found, failed, errors = await self._lookup(GET_POSTS, "uris", "posts", post_from_view, valid)
        if errors:
            # Never return a partial dict: an absent URI means "deleted" to the caller.
            raise BatchFailed(GET_POSTS, failed, errors, found)
        return found

    # --- one XRPC query, with retries --------------------------------------------------------

    async def _call(self, method: str, params: list[tuple[str, str]], *, require: str | None = None) -> Any:
        """The decoded JSON object of a successful query; `require` names a list it must hold."""
        if self._session is None:
            raise RuntimeError("use the client as `async with AppView(settings) as appview:`")
        attempts = self.settings.max_attempts
        # A 429 is the server saying "not now", not a failure: it does not use up one of
        # max_attempts, or in a storm (several processes racing for each freed slot) a request
        # could lose every race and fail its user although the client waited as told. Its own
        # allowance still bounds the wait: a server that never lets us in fails the request.
        refusals_allowed = attempts * RATE_LIMITED_ATTEMPTS_FACTOR
        failures = refusals = sent = 0
        while True:
            sent += 1
            try:
                # The limiter wait happens inside the semaphore: a process then holds at most
                # `concurrency` reserved slots, so processes share the machine's budget fairly
                # and no slot goes to a request that could not start when it comes.
                async with self._semaphore:
                    return await self._attempt(method, params, require)
            except Transient as exc:
                self.counters.count_error(exc.kind)
                if exc.status == 429:
                    refusals += 1
                    exhausted, count, allowed = refusals >= refusals_allowed, refusals, refusals_allowed
                else:
                    failures += 1
                    exhausted, count, allowed = failures >= attempts, failures, attempts
                if exhausted:
                    raise RetriesExhausted(method, sent, exc.kind, exc.detail, exc.status) from exc
                self.counters.retries += 1
                # After a 429 the pause is in the shared limiter (every process waits) and the
                # next acquire() sleeps until it ends, so there is no extra wait here.
                wait = exc.paused if exc.paused is not None else self._backoff(failures - 1)
                log.warning(
                    "%s: %s (%s %d of %d); retrying in %.2fs",
                    method,
                    exc.detail,
                    "refusal" if exc.status == 429 else "attempt",
                    count,
                    allowed,
                    wait,
                )
                if exc.paused is None:
                    await asyncio.sleep(wait)
            except AppViewError as exc:
                self.counters.count_error(error_kind(exc))
                raise

    def _backoff(self, retry: int) -> float:
        """Capped exponential backoff with full jitter, so many clients' retries spread out."""
        # min(retry, 60): 2**60 s is already past any cap, and larger exponents overflow floats.
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2.0 ** min(retry, 60))
        return random.uniform(0.0, ceiling)

    async def _attempt(self, method: str, params: list[tuple[str, str]], require: str | None) -> Any:
        waited_from = time.monotonic()
        await self.limiter.acquire()
        started = time.monotonic()
        self.counters.throttle_seconds += started - waited_from
        self.counters.requests[method] = self.counters.requests.get(method, 0) + 1
        url = URL(f"{self.base_url}/xrpc/{method}")
        try:
            # params as (name, value) pairs: yarl encodes every value, so `&`, `=`, `#`, `+` or
            # `%` inside a DID or cursor can never add or change a parameter.
            async with self._session.get(
                url, params=params, allow_redirects=False, timeout=self._timeout, headers={"User-Agent": USER_AGENT}
            ) as response:
                self.limiter.observe(response.headers)
                status = response.status
                if 300 <= status < 400:
                    raise RedirectError(status, wire.redirect_host(url, response.headers.get("Location")), method)
                body = await self._read(method, response)
                headers = response.headers
        except TimeoutError as exc:  # aiohttp's connect, read and total timeouts all derive from it
            raise Transient("timeout", f"timed out ({type(exc).__name__})") from exc
        except aiohttp.ClientSSLError as exc:
            raise AppViewError(f"{method}: TLS failure: {exc}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise Transient("truncated", f"body cut short ({exc})") from exc
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise Transient("connection", f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.InvalidURL as exc:
            raise AppViewError(f"{method}: invalid URL {exc}") from exc
        except aiohttp.ClientError as exc:  # a malformed HTTP answer and the like
            raise Transient("client_error", f"{type(exc).__name__}: {exc}") from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("GET %s -> %d, %d bytes in %.0f ms", method, status, len(body), elapsed_ms)

        if 200 <= status < 300:
            parse_started = time.process_time()
            try:
                return wire.decode(body, status, require)
            finally:
                self.counters.parse_seconds += time.process_time() - parse_started
        if status == 429:
            self.counters.rate_limited += 1
            wait = wire.retry_after(headers)
            if wait is None:
                wait = self._backoff(0)
            self.limiter.pause_until(time.time() + wait)
            raise Transient("rate_limited", "HTTP 429", 429, paused=wait)
        error, message = wire.error_body(body)
        if status in RETRY_STATUSES:
            raise Transient(f"http_{status}", f"HTTP {status} {error or ''} {message or ''}".strip(), status)
        raise XrpcError(status, error, message, method)

    async def _read(self, method: str, response: aiohttp.ClientResponse) -> bytes:
        """The body, refusing more than max_response_bytes whether or not its size is declared."""
        limit = self.settings.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise ResponseTooLarge(method, limit, declared)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            self.counters.bytes_received += len(chunk)
            if size > limit:
                raise ResponseTooLarge(method, limit, None)
            chunks.append(chunk)
        return b"".join(chunks)


def _askable_did(did: object) -> bool:
    """A DID we may send: valid syntax, and short enough to be in the users table at all."""
    return isinstance(did, str) and len(did) <= DID_MAX and is_did(did)


async def _gather(calls: Iterable[Any]) -> list[Any]:
    """Results of concurrent calls, AppViewErrors returned in place; anything else propagates."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, AppViewError):
            raise result
    return results
