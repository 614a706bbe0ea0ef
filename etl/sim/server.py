"""The simulated AppView as an aiohttp application: XRPC methods plus the `/_sim/` admin API.

XRPC (GET, lexicon shapes, errors `{"error", "message"}` with status 400 like the real service):
    /xrpc/app.bsky.actor.getProfile     ?actor=
    /xrpc/app.bsky.actor.getProfiles    ?actors=&actors=...   (1..25)
    /xrpc/app.bsky.feed.getAuthorFeed   ?actor=&limit=&cursor=&filter=&includePins=
    /xrpc/app.bsky.feed.getPosts        ?uris=&uris=...       (1..25)
    /xrpc/_health                       {"version": "sim"}
    anything else under /xrpc/          501 {"error": "MethodNotImplemented"}
Each XRPC request passes, in order: the rate limit (429), the added latency, transport faults,
then the method (see `faults.py` for the fault rules). Cursors are opaque url-safe base64.

Admin (never rate limited, delayed or faulted):
    GET  /_sim/users?offset=&limit=    {"users": [{"did", "handle", "status"}], "next_offset"?}
                                       limit default 1000, at most 10000
    GET  /_sim/truth?did=[&since=ISO]  {"did", "handle", "status", "displayName", "avatar",
                                        "followersCount", "followsCount", "postsCount",
                                        "posts": [{"uri", "createdAt", "indexedAt", "likeCount",
                                                   "replyCount", "repostCount", "quoteCount"}],
                                        "feed_items", "feed_items_since"}
                                       profile fields null and posts empty for inactive accounts;
                                       posts newest first by feed sort time; counts are the true
                                       integers even under bad_counts; feed_items_since equals
                                       feed_items without `since`
    GET  /_sim/stats                   {"requests": {method: n}, "status_codes": {"200": n},
                                        "rate_limited": n, "faults": {kind: n}}
    POST /_sim/stats/reset             zeroes them, answers the zeroed stats
    POST /_sim/advance?days=N          {"day", "now"}   (N >= 0, default 1)
    GET  /_sim/clock                   {"day", "now", "date"}
    GET  /_sim/events?day=D            {"day", "handle_swaps": [[did, did]], "handle_changes":
                                        [{"did", "old", "new"}], "deactivations": [did]}
                                       (scans the whole population; D defaults to today)
    GET  /_sim/info                    {"users", "seed", "start", "day", "activity"}
    GET|POST /_sim/faults              the fault configuration (shape in faults.py)
    GET|POST /_sim/rate-limit          {"limit": N | null, "window": seconds}; null or 0 = off

Programmatic use: `make_app(...)` for a test's own event loop, `serve_in_thread(...)` for
synchronous code in the same process, and `etl.sim.process.SimProcess` for a separate process.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from etl.sim import syntax
from etl.sim.faults import FaultConfig, Faults, RateLimiter, Stats
from etl.sim.ids import iso
from etl.sim.population import ACTIVE, DEACTIVATED, NOT_FOUND, TAKENDOWN, Population, Post
from etl.sim.views import Renderer, dumps

log = logging.getLogger("etl.sim")

MAX_ACTORS = 25
MAX_URIS = 25
JSON = "application/json"
_CURSOR = struct.Struct(">qqBI")
_TOP_KEY = (2**62, 0, 0)  # above every row: "nothing read yet"
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class SimOptions:
    """Everything that configures a simulator (the CLI flags, as a value)."""

    users: int = 1000
    seed: int = 0
    start: date | None = None
    day: int = 0
    rate_limit: int = 0
    rate_window: float = 300.0
    latency_ms: float = 0.0
    faults: dict[str, float] = field(default_factory=dict)
    fault_attempts: int = 2
    activity: float = 1.0


class XrpcError(Exception):
    """An XRPC error answer."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


class SimState:
    """The mutable part of a running simulator: clock, faults, rate limit, stats."""

    def __init__(self, population: Population, options: SimOptions) -> None:
        self.pop = population
        self.options = options
        self.day = options.day
        self.stats = Stats()
        self.closing = False
        self.limiter = RateLimiter(options.rate_limit, options.rate_window) if options.rate_limit else None
        self.latency = options.latency_ms / 1000
        self.set_faults(FaultConfig.from_json({"rates": options.faults, "attempts": options.fault_attempts}))

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault configuration (attempt counts and render caches start over)."""
        self.faults = Faults(config, self.pop.seed)
        self.renderer = Renderer(self.pop, self.faults)

    def status(self, index: int) -> str:
        """The account status now, a targeted override first."""
        return self.faults.status(self.pop.did(index)) or self.pop.status(index, self.day)

    def now_iso(self) -> str:
        """The simulated now."""
        return iso(self.pop.now_us(self.day))


STATE = web.AppKey("sim_state", SimState)


def make_app(population_or_options: Population | SimOptions | None = None, **options: Any) -> web.Application:
    """The simulator as an aiohttp Application (options as SimOptions fields or keywords)."""
    if isinstance(population_or_options, Population):
        population = population_or_options
        opts = SimOptions(
            users=population.size, seed=population.seed, start=population.start, activity=population.activity, **options
        )
    else:
        opts = replace(population_or_options or SimOptions(), **options)
        population = Population(opts.users, opts.seed, opts.start, activity=opts.activity)
    app = web.Application()
    app[STATE] = SimState(population, opts)
    app.router.add_get("/xrpc/{method}", _xrpc)
    app.router.add_get("/_sim/users", _users)
    app.router.add_get("/_sim/truth", _truth)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/stats/reset", _stats_reset)
    app.router.add_post("/_sim/advance", _advance)
    app.router.add_get("/_sim/clock", _clock)
    app.router.add_get("/_sim/events", _events)
    app.router.add_get("/_sim/info", _info)
    app.router.add_get("/_sim/faults", _faults_get)
    app.router.add_post("/_sim/faults", _faults_set)
    app.router.add_get("/_sim/rate-limit", _rate_get)
    app.router.add_post("/_sim/rate-limit", _rate_set)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].closing = True  # releases handlers hanging for the `timeout` fault


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(payload), status=status, content_type=JSON, charset="utf-8", headers=headers)


# --- XRPC ------------------------------------------------------------------------------------
async def _xrpc(request: web.Request) -> web.StreamResponse:
    """Rate limit, latency, faults, then the method."""
    state = request.app[STATE]
    method = request.match_info["method"]
    state.stats.requests[method] += 1
    headers: dict[str, str] = {}
    if state.limiter is not None:
        allowed, headers = state.limiter.check(request.remote or "unknown")
        if not allowed:
            state.stats.rate_limited += 1
            if state.latency:
                await asyncio.sleep(state.latency)
            return _answer(state, _json({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429, headers))
    if state.latency:
        await asyncio.sleep(state.latency)
    handler = METHODS.get(method)
    if handler is None:
        message = "Method Not Implemented"
        return _answer(state, _json({"error": "MethodNotImplemented", "message": message}, 501, headers))
    identity = method + "?" + "&".join(f"{k}={v}" for k, v in sorted(request.query.items(), key=lambda kv: kv[0]))
    faults = state.faults
    attempt = faults.attempt(identity)
    scope, dids = _fault_scope(state, method, request)
    kind = faults.transport(identity, attempt, dids, scope)
    if kind is not None and kind != "truncated":
        state.stats.faults[kind] += 1
        return await _transport_fault(state, request, kind, headers)
    try:
        payload = handler(state, request, identity)
    except XrpcError as exc:
        return _answer(state, _json({"error": exc.error, "message": exc.message}, exc.status, headers))
    body = dumps(payload)
    if kind == "truncated":  # a proxy that cut the body yet sent a matching Content-Length
        state.stats.faults[kind] += 1
        body = body[: len(body) // 2]
    return _answer(state, web.Response(body=body, content_type=JSON, charset="utf-8", headers=headers))


def _answer(state: SimState, response: web.StreamResponse) -> web.StreamResponse:
    state.stats.status_codes[str(response.status)] += 1
    return response


def _fault_scope(state: SimState, method: str, request: web.Request) -> tuple[str, list[str]]:
    """Which target field applies to this request, and the DIDs it names (only with targets)."""
    if not state.faults.has_targets:
        return "", []
    pop, query = state.pop, request.query
    if method == "app.bsky.feed.getPosts":
        names = [uri[5:].split("/", 1)[0] for uri in query.getall("uris", []) if uri.startswith("at://")]
        scope = "posts"
    else:
        names = query.getall("actors", []) if method == "app.bsky.actor.getProfiles" else query.getall("actor", [])
        scope = "feed" if method == "app.bsky.feed.getAuthorFeed" else "profile"
    dids = []
    for name in names:
        index = pop.resolve(name, state.day) if syntax.is_at_identifier(name) else None
        if index is not None:
            dids.append(pop.did(index))
    return scope, dids


async def _transport_fault(state: SimState, request: web.Request, kind: str, headers: dict) -> web.StreamResponse:
    """Answer (or refuse to answer) the way a failing server or network would."""
    if kind == "500":
        return _answer(state, _json({"error": "InternalServerError", "message": "Internal Server Error"}, 500, headers))
    if kind == "503":
        body = {"error": "NotEnoughResources", "message": "Service Unavailable"}
        return _answer(state, _json(body, 503, headers))
    if kind == "502":
        html = web.Response(text=BAD_GATEWAY_HTML, status=502, content_type="text/html")
        return _answer(state, html)
    if kind == "timeout":
        # Hang until the client gives up (or the server stops); never longer than an hour.
        for _ in range(36_000):
            transport = request.transport
            if state.closing or transport is None or transport.is_closing():
                break
            await asyncio.sleep(0.1)
    else:  # reset: abort the connection with an RST, no response at all
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
    # Nothing reaches the client: the connection is gone (or about to be).
    raise asyncio.CancelledError


def _actor(request: web.Request, name: str = "actor") -> str:
    value = request.query.get(name)
    if value is None:
        raise XrpcError(400, "InvalidRequest", f'Error: Params must have the property "{name}"')
    if not syntax.is_at_identifier(value):
        raise XrpcError(400, "InvalidRequest", f"Error: {name} must be a valid did or a handle")
    return value


def get_profile(state: SimState, request: web.Request, identity: str) -> dict:
    """app.bsky.actor.getProfile."""
    index = state.pop.resolve(_actor(request), state.day)
    if index is None:
        raise XrpcError(400, "InvalidRequest", "Profile not found")
    status = state.status(index)
    if status == DEACTIVATED:
        raise XrpcError(400, "AccountDeactivated", "Account is deactivated")
    if status == TAKENDOWN:
        raise XrpcError(400, "AccountTakedown", "Account has been suspended")
    if status == NOT_FOUND:
        raise XrpcError(400, "InvalidRequest", "Profile not found")
    return state.renderer.profile(index, state.day)


def get_profiles(state: SimState, request: web.Request, identity: str) -> dict:
    """app.bsky.actor.getProfiles: input order, inactive and unknown accounts left out."""
    actors = request.query.getall("actors", [])
    if not actors:
        raise XrpcError(400, "InvalidRequest", 'Error: Params must have the property "actors"')
    if len(actors) > MAX_ACTORS:
        raise XrpcError(400, "InvalidRequest", f"Error: actors must not have more than {MAX_ACTORS} elements")
    for n, actor in enumerate(actors):
        if not syntax.is_at_identifier(actor):
            raise XrpcError(400, "InvalidRequest", f"Error: actors/{n} must be a valid did or a handle")
    profiles = []
    for actor in actors:
        index = state.pop.resolve(actor, state.day)
        if index is not None and state.status(index) == ACTIVE:
            profiles.append(state.renderer.profile(index, state.day))
    return {"profiles": profiles}


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise XrpcError(400, "InvalidRequest", f"Error: {name} must be an integer") from None
    if value < low:
        raise XrpcError(400, "InvalidRequest", f"Error: {name} can not be less than {low}")
    if value > high:
        raise XrpcError(400, "InvalidRequest", f"Error: {name} can not be greater than {high}")
    return value


def encode_cursor(key: tuple[int, int, int], page: int) -> str:
    """An opaque cursor naming a feed position (and the page number, so repeats differ)."""
    return base64.urlsafe_b64encode(_CURSOR.pack(key[0], key[1], key[2], page)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[tuple[int, int, int], int]:
    """The (position, page) a cursor names; XrpcError for anything this server did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_us, t, flag, page = _CURSOR.unpack(raw)
    except (ValueError, struct.error):
        raise XrpcError(400, "InvalidRequest", "Malformed cursor") from None
    return (sort_us, t, flag), page


def get_author_feed(state: SimState, request: web.Request, identity: str) -> dict:
    """app.bsky.feed.getAuthorFeed, with the feed-page faults."""
    pop, day, faults = state.pop, state.day, state.faults
    actor = _actor(request)
    limit = _int_param(request, "limit", 50, 1, 100)
    include_pins = request.query.get("includePins", "false")
    if include_pins not in ("true", "false"):
        raise XrpcError(400, "InvalidRequest", "Error: includePins must be a boolean")
    feed_filter = request.query.get("filter", "posts_with_replies")
    raw_cursor = request.query.get("cursor")
    key, page = decode_cursor(raw_cursor) if raw_cursor else (_TOP_KEY, 0)
    index = pop.resolve(actor, day)
    if index is None or state.status(index) != ACTIVE:
        raise XrpcError(400, "InvalidRequest", "Profile not found")
    did = pop.did(index)
    rows = pop.timeline(index, day).view(feed_filter)
    end = bisect.bisect_left(rows, key)
    if raw_cursor and faults.feed("dup_posts", identity, did):
        duplicated = bisect.bisect_left(rows, (key[0], key[1], key[2] + 1))
        if duplicated != end:
            state.stats.faults["dup_posts"] += 1
            end = duplicated
    start = max(0, end - limit)
    chosen = rows[start:end]
    next_key = rows[start][:3] if start > 0 else None
    if chosen and faults.feed("short_pages", identity, did):
        pick = faults.pick("short", identity)
        keep = 0 if pick % 5 == 0 else 1 + (pick >> 8) % max(1, len(chosen) - 1)
        if keep < len(chosen):
            state.stats.faults["short_pages"] += 1
            chosen = chosen[len(chosen) - keep:]
            next_key = chosen[0][:3] if keep else key
    if next_key is None and faults.feed("endless_feed", identity, did):
        state.stats.faults["endless_feed"] += 1
        next_key = chosen[0][:3] if chosen else key
    renderer = state.renderer
    feed = renderer.feed([row[3] for row in reversed(chosen)], day)
    if include_pins == "true" and not raw_cursor:
        pinned = pop.pinned(index, day)
        if pinned is not None:
            feed.insert(0, renderer.pin_item(pinned, day))
    answer: dict = {"feed": feed}
    if raw_cursor and faults.feed("repeat_cursor", identity, did):
        state.stats.faults["repeat_cursor"] += 1
        answer["cursor"] = raw_cursor
    elif next_key is not None:
        answer["cursor"] = encode_cursor(next_key, page + 1)
    return answer


def get_posts(state: SimState, request: web.Request, identity: str) -> dict:
    """app.bsky.feed.getPosts: input order, deleted and unknown posts left out."""
    uris = request.query.getall("uris", [])
    if not uris:
        raise XrpcError(400, "InvalidRequest", 'Error: Params must have the property "uris"')
    if len(uris) > MAX_URIS:
        raise XrpcError(400, "InvalidRequest", f"Error: uris must not have more than {MAX_URIS} elements")
    for n, uri in enumerate(uris):
        if not syntax.is_at_uri(uri):
            raise XrpcError(400, "InvalidRequest", f"Error: uris/{n} must be a valid at-uri")
    posts = []
    for uri in uris:
        post = find_post(state, uri)
        if post is not None:
            posts.append(state.renderer.post_view(post, state.day))
    return {"posts": posts}


def find_post(state: SimState, uri: str) -> Post | None:
    """The post an AT-URI names if the AppView would show it now."""
    authority, _, rest = uri[5:].partition("/")
    collection, _, rkey = rest.partition("/")
    if collection != "app.bsky.feed.post" or not rkey:
        return None
    index = state.pop.resolve(authority, state.day)
    if index is None or state.status(index) != ACTIVE:
        return None
    post = state.pop.find_post(index, rkey)
    if post is None or not post.exists_at(state.pop.now_us(state.day)):
        return None
    return post


def health(state: SimState, request: web.Request, identity: str) -> dict:
    """_health, as the real AppView answers it."""
    return {"version": "sim"}


METHODS = {
    "app.bsky.actor.getProfile": get_profile,
    "app.bsky.actor.getProfiles": get_profiles,
    "app.bsky.feed.getAuthorFeed": get_author_feed,
    "app.bsky.feed.getPosts": get_posts,
    "_health": health,
}


# --- admin -------------------------------------------------------------------------------------
def _admin_error(message: str, status: int = 400) -> web.Response:
    return _json({"error": "InvalidRequest" if status == 400 else "NotFound", "message": message}, status)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=dumps({"error": "InvalidRequest", "message": message}).decode(), content_type=JSON)


def _admin_int(request: web.Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise _bad_request(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be >= {low}")
    return value


async def _users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pop = state.pop
    offset = _admin_int(request, "offset", 0, 0)
    limit = _admin_int(request, "limit", 1000, 1, 10_000)
    end = min(pop.size, offset + limit)
    users = [{"did": pop.did(i), "handle": pop.handle(i, state.day), "status": state.status(i)} for i in range(offset, end)]
    answer: dict = {"users": users}
    if end < pop.size:
        answer["next_offset"] = end
    return _json(answer)


async def _truth(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pop, day = state.pop, state.day
    did = request.query.get("did", "")
    index = pop.index_of_did(did)
    if index is None:
        return _admin_error(f"no user with DID {did!r} in this world", 404)
    since_us = None
    if "since" in request.query:
        try:
            since = datetime.fromisoformat(request.query["since"].replace("Z", "+00:00"))
        except ValueError:
            return _admin_error("since must be an ISO datetime")
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        since_us = int(since.timestamp() * 1_000_000)
    status = state.status(index)
    answer: dict = {"did": did, "handle": pop.handle(index, day), "status": status}
    if status != ACTIVE:
        answer.update(dict.fromkeys(("displayName", "avatar", "followersCount", "followsCount", "postsCount")))
        answer.update(posts=[], feed_items=0, feed_items_since=0)
        return _json(answer)
    profile = pop.profile(index, day)
    timeline = pop.timeline(index, day)
    posts = []
    for row in reversed(timeline.rows):
        post = row[3]
        if isinstance(post, Post):
            likes, replies, reposts, quotes, _ = pop.engagement(post, day)
            posts.append(
                {
                    "uri": pop.uri(post),
                    "createdAt": pop.created_at(post),
                    "indexedAt": pop.indexed_at(post),
                    "likeCount": likes,
                    "replyCount": replies,
                    "repostCount": reposts,
                    "quoteCount": quotes,
                }
            )
    answer.update(
        displayName=state.renderer.display_name(index),
        avatar=pop.avatar(index),
        followersCount=profile.followers,
        followsCount=profile.follows,
        postsCount=profile.posts_count,
        posts=posts,
        feed_items=len(timeline.rows),
        feed_items_since=len(timeline.rows) if since_us is None else timeline.count_since(since_us),
    )
    return _json(answer)


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE].stats.to_json())


async def _stats_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats.reset()
    return _json(state.stats.to_json())


async def _advance(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.day += _admin_int(request, "days", 1, 0)
    return _json({"day": state.day, "now": state.now_iso()})


async def _clock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    today = state.pop.start + timedelta(days=state.day)
    return _json({"day": state.day, "now": state.now_iso(), "date": today.isoformat()})


async def _info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pop = state.pop
    return _json(
        {"users": pop.size, "seed": pop.seed, "start": pop.start.isoformat(), "day": state.day, "activity": pop.activity}
    )


async def _events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pop = state.pop
    day = _admin_int(request, "day", state.day, 0)
    answer = await asyncio.get_running_loop().run_in_executor(None, events_on, pop, day)
    return _json(answer)


def events_on(pop: Population, day: int) -> dict:
    """The scheduled world events of a day: handle swaps, handle changes, deactivations."""
    return {
        "day": day,
        "handle_swaps": [[pop.did(a), pop.did(b)] for a, b in pop.swaps_on(day)],
        "handle_changes": [
            {"did": pop.did(i), "old": pop.own_handle(i, day - 1), "new": pop.own_handle(i, day)}
            for i in pop.handle_changes_on(day)
        ],
        "deactivations": [pop.did(i) for i in pop.deactivations_on(day)],
    }


async def _faults_get(request: web.Request) -> web.Response:
    return _json(request.app[STATE].faults.config.to_json())


async def _faults_set(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        config = FaultConfig.from_json(await request.json())
    except ValueError as exc:  # includes malformed JSON
        return _admin_error(str(exc))
    state.set_faults(config)
    return _json(config.to_json())


async def _rate_get(request: web.Request) -> web.Response:
    limiter = request.app[STATE].limiter
    return _json(limiter.to_json() if limiter else {"limit": None, "window": request.app[STATE].options.rate_window})


async def _rate_set(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
        if not isinstance(body, dict) or set(body) - {"limit", "window"}:
            raise ValueError("expected {\"limit\": N | null, \"window\": seconds}")
        limit = body.get("limit") or 0
        window = body.get("window", state.options.rate_window)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be an integer >= 0 or null")
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            raise ValueError("window must be a number of seconds > 0")
    except ValueError as exc:
        return _admin_error(str(exc))
    state.options.rate_window = float(window)
    state.limiter = RateLimiter(limit, float(window)) if limit else None
    return await _rate_get(request)


# --- running it ----------------------------------------------------------------------------------
async def start_site(app: web.Application, port: int = 0, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner (for cleanup) and the bound port."""
    # handler_cancellation: a `timeout` fault's handler ends when its client hangs up.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


class ThreadedServer:
    """A simulator running in a background thread; `url`, `state` and `population` to use it."""

    def __init__(self, url: str, app: web.Application, loop: asyncio.AbstractEventLoop) -> None:
        self.url, self.app, self._loop = url, app, loop

    @property
    def state(self) -> SimState:
        """The live state (clock, faults, stats)."""
        return self.app[STATE]

    @property
    def population(self) -> Population:
        """The world being served."""
        return self.app[STATE].pop

    def call(self, func: Any, *args: Any) -> Any:
        """Run `func(*args)` on the server's loop (for state changes while it serves)."""

        async def run() -> Any:
            return func(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def advance(self, days: int = 1) -> int:
        """Move the clock; returns the new day."""

        def move() -> int:
            self.state.day += days
            return self.state.day

        return self.call(move)

    def set_faults(self, config: dict) -> None:
        """Replace the fault configuration (admin JSON shape)."""
        self.call(self.state.set_faults, FaultConfig.from_json(config))


@contextlib.contextmanager
def serve_in_thread(population: Population | None = None, **options: Any) -> Iterator[ThreadedServer]:
    """Serve a simulator on 127.0.0.1:<free port> from a background thread for the `with` block."""
    app = make_app(population, **options) if population is not None else make_app(SimOptions(**options))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["runner"], box["port"] = loop.run_until_complete(start_site(app))
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="sim-appview", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield ThreadedServer(f"http://127.0.0.1:{box['port']}", app, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
