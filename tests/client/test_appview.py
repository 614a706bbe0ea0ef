"""The AppView client against a mocked transport (aioresponses): every branch of every call."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from datetime import UTC, datetime
from email.utils import formatdate

import aiohttp
import pytest

from etl.appview import (
    AccountUnavailable,
    AppView,
    AppViewError,
    BatchFailed,
    Counters,
    RedirectError,
    ResponseTooLarge,
    RetriesExhausted,
    XrpcError,
)
from etl.appview.client import GET_AUTHOR_FEED, GET_POSTS, GET_PROFILE, GET_PROFILES, USER_AGENT
from etl.appview.wire import retry_after
from tests.client.conftest import (
    PIN,
    did_n,
    item,
    post_view,
    profile_view,
    reply,
    repost_by,
    uri_of,
    xrpc,
)
from tests.client.conftest import run as run_coro

DID = did_n(1)
OTHER = did_n(2)
SINCE = datetime(2026, 3, 5, tzinfo=UTC)


def day(d: int, hour: int = 12) -> str:
    return f"2026-03-{d:02d}T{hour:02d}:00:00.000Z"


def own(rkey: str, d: int) -> dict:
    return post_view(DID, rkey, created=day(d))


def using(client: AppView, call):
    """Run `call(client)` inside the client's context."""

    async def go():
        async with client as c:
            return await call(c)

    return run_coro(go())


def feed_handler(pages: dict):
    """Answer getAuthorFeed from {cursor: (items, next cursor)}."""

    def handler(url):
        items, next_cursor = pages[url.query.get("cursor")]
        body = {"feed": items}
        if next_cursor is not None:
            body["cursor"] = next_cursor
        return reply(body)

    return handler


def profiles_handler(omit: set[str] = frozenset(), extra: list[str] = ()):
    def handler(url):
        asked = url.query.getall("actors")
        return reply({"profiles": [profile_view(d) for d in asked if d not in omit] + [profile_view(d) for d in extra]})

    return handler


def requests_made(mocked) -> int:
    return sum(len(calls) for calls in mocked.requests.values())


# --- getProfiles -------------------------------------------------------------------------------


def test_get_profiles_splits_60_dids_into_calls_of_25_25_10(server, make_client):
    server.route(GET_PROFILES, profiles_handler())
    dids = [did_n(i) for i in range(60)]
    result = using(make_client(), lambda c: c.get_profiles(dids))
    sizes = sorted((len(url.query.getall("actors")) for url in server.urls()), reverse=True)
    assert sizes == [25, 25, 10]
    assert sorted(d for url in server.urls() for d in url.query.getall("actors")) == sorted(dids)
    assert set(result.profiles) == set(dids) and result.omitted == []


def test_get_profiles_keys_by_did_and_lists_omitted_in_input_order(server, make_client):
    dids = [did_n(i) for i in range(30)]
    gone = {did_n(27), did_n(3), did_n(15)}
    server.route(GET_PROFILES, profiles_handler(omit=gone))
    result = using(make_client(), lambda c: c.get_profiles(dids))
    assert result.omitted == [did_n(3), did_n(15), did_n(27)]
    assert result.profiles[did_n(4)].did == did_n(4)
    assert result.profiles[did_n(4)].followers == 10


def test_get_profiles_ignores_a_profile_for_a_did_not_asked_with_a_warning(server, make_client, caplog):
    server.route(GET_PROFILES, profiles_handler(extra=[did_n(99)]))
    with caplog.at_level(logging.WARNING, logger="etl.appview"):
        result = using(make_client(), lambda c: c.get_profiles([DID]))
    assert set(result.profiles) == {DID}
    assert did_n(99) in caplog.text


def test_get_profiles_never_sends_an_invalid_did_and_counts_it_omitted(server, make_client):
    server.route(GET_PROFILES, profiles_handler())
    result = using(make_client(), lambda c: c.get_profiles([DID, "bsky.app", "did:plc:a&actors=x", OTHER]))
    assert [d for url in server.urls() for d in url.query.getall("actors")] == [DID, OTHER]
    assert result.omitted == ["bsky.app", "did:plc:a&actors=x"]


def test_get_profiles_asks_for_a_repeated_did_once(server, make_client):
    server.route(GET_PROFILES, profiles_handler())
    result = using(make_client(), lambda c: c.get_profiles([DID, OTHER, DID]))
    assert server.urls()[0].query.getall("actors") == [DID, OTHER]
    assert set(result.profiles) == {DID, OTHER}


def test_get_profiles_with_nothing_to_ask_makes_no_request(server, make_client):
    assert using(make_client(), lambda c: c.get_profiles([])).profiles == {}
    assert server.calls == []


def test_a_did_with_percent_escapes_reaches_the_server_unaltered(server, make_client):
    did = "did:web:localhost%3A1234"
    server.route(GET_PROFILES, profiles_handler())
    result = using(make_client(), lambda c: c.get_profiles([did]))
    (url,) = server.urls()
    assert url.query.getall("actors") == [did]
    assert "localhost%253A1234" in url.raw_query_string
    assert did in result.profiles


def test_a_failed_profiles_call_raises_batch_failed_with_the_other_calls_results(server, make_client):
    dids = [did_n(i) for i in range(30)]

    def handler(url):
        asked = url.query.getall("actors")
        if did_n(29) in asked:
            return reply({"error": "InvalidRequest", "message": "boom"}, status=400)
        return reply({"profiles": [profile_view(d) for d in asked]})

    server.route(GET_PROFILES, handler)
    with pytest.raises(BatchFailed) as caught:
        using(make_client(), lambda c: c.get_profiles(dids))
    failure = caught.value
    assert failure.failed == dids[25:]
    assert set(failure.partial.profiles) == set(dids[:25])
    assert failure.partial.omitted == []  # unanswered is not omitted
    assert isinstance(failure.errors[0], XrpcError) and failure.errors[0].error == "InvalidRequest"


def test_requests_in_flight_never_exceed_the_concurrency_setting(server, make_client):
    in_flight = peak = 0

    async def handler(url):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return reply({"profiles": [profile_view(d) for d in url.query.getall("actors")]})

    server.route(GET_PROFILES, handler)
    using(make_client(concurrency=2), lambda c: c.get_profiles([did_n(i) for i in range(125)]))
    assert len(server.calls) == 5
    assert peak == 2


# --- getProfile: account status ----------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (200, profile_view(DID), "active"),
        (400, {"error": "InvalidRequest", "message": "Profile not found"}, "not_found"),
        (400, {"error": "InvalidRequest", "message": "Actor not found"}, "not_found"),
        (400, {"error": "AccountDeactivated", "message": "Account is deactivated"}, "deactivated"),
        (400, {"error": "AccountTakedown", "message": "Account has been suspended"}, "takendown"),
    ],
)
def test_account_status_maps_each_answer(status, body, expected, server, make_client):
    server.route(GET_PROFILE, lambda url: reply(body, status=status))
    assert using(make_client(), lambda c: c.account_status(DID)) == expected
    assert server.urls()[0].query.getall("actor") == [DID]
    assert len(server.calls) == 1


def test_account_status_of_a_malformed_did_is_not_found_without_a_request(server, make_client):
    assert using(make_client(), lambda c: c.account_status("not a did")) == "not_found"
    assert server.calls == []


def test_account_status_raises_other_errors(server, make_client):
    server.route(GET_PROFILE, lambda url: reply({"error": "InvalidRequest", "message": "bad actor"}, status=400))
    with pytest.raises(XrpcError, match="InvalidRequest"):
        using(make_client(), lambda c: c.account_status(DID))


def test_profile_by_handle_returns_the_profile_or_raises_account_unavailable(server, make_client):
    server.route(GET_PROFILE, lambda url: reply(profile_view(DID, "bsky.app")))
    assert using(make_client(), lambda c: c.profile("bsky.app")).did == DID
    assert server.urls()[0].query["actor"] == "bsky.app"


def test_profile_of_a_deactivated_account_raises_account_unavailable(server, make_client):
    server.route(GET_PROFILE, lambda url: reply({"error": "AccountDeactivated"}, status=400))
    with pytest.raises(AccountUnavailable) as caught:
        using(make_client(), lambda c: c.profile(DID))
    assert caught.value.status == "deactivated"


# --- getAuthorFeed -----------------------------------------------------------------------------


def test_feed_follows_the_cursor_to_the_end_and_is_complete(server, make_client):
    pages = {None: ([item(own("a", 20)), item(own("b", 19))], "c1"), "c1": ([item(own("c", 18))], None)}
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert [p.uri for p in result.posts] == [uri_of(DID, r) for r in "abc"]
    assert (result.complete, result.stop, result.pages, result.error) == (True, "end", 2, None)
    first, second = server.urls()
    assert dict(first.query) == {
        "actor": DID,
        "limit": "100",
        "filter": "posts_with_replies",
        "includePins": "false",
    }
    assert second.query.getall("cursor") == ["c1"]


def test_feed_stops_at_the_page_reaching_since_and_keeps_its_older_posts(server, make_client):
    pages = {
        None: ([item(own(f"a{d}", d)) for d in range(20, 10, -1)], "c1"),
        "c1": ([item(own(f"b{d}", d)) for d in range(10, 1, -1)], "c2"),
        "c2": ([item(own("never", 1))], None),
    }
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, SINCE))
    assert (result.complete, result.stop, result.pages) == (True, "since", 2)
    assert len(result.posts) == 19
    assert uri_of(DID, "b2") in {p.uri for p in result.posts}  # older than since, still returned
    assert len(server.calls) == 2


def test_an_old_pinned_post_does_not_stop_the_feed_early(server, make_client):
    old = post_view(DID, "pinned", created="2025-01-01T00:00:00.000Z")
    pages = {
        None: ([item(old, PIN), item(own("a", 20))], "c1"),
        "c1": ([item(own("b", 19)), item(old)], None),
    }
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert (result.stop, result.pages) == ("end", 2)
    # The pin item is skipped; the post counts once, at its own place in the feed.
    assert [p.uri for p in result.posts] == [uri_of(DID, r) for r in ("a", "b", "pinned")]


def test_a_repost_sorts_by_its_repost_time_not_the_original_post_time(server, make_client):
    others_old = post_view(OTHER, "x", created="2024-01-01T00:00:00.000Z")
    pages = {
        None: ([item(own("a", 20)), item(others_old, repost_by(DID, day(19)))], "c1"),
        "c1": ([item(own("b", 18))], None),
    }
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, SINCE))
    assert (result.stop, result.pages) == ("end", 2)


def test_feed_keeps_own_original_posts_in_their_own_order_skipping_pins_and_reposts(server, make_client):
    mine = own("a", 20)
    pages = {
        None: (
            [
                item(mine, PIN),
                item(post_view(OTHER, "x", created=day(20)), repost_by(DID, day(20))),
                item(post_view(DID, "a", created=day(20), likeCount=99), repost_by(DID, day(20))),
                item(mine),
                item(own("b", 19)),
            ],
            None,
        )
    }
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert [p.uri for p in result.posts] == [uri_of(DID, "a"), uri_of(DID, "b")]
    assert result.posts[0].likes == 3  # the first occurrence wins
    assert all(p.did == DID for p in result.posts)


def test_feed_stops_on_a_repeated_cursor_as_incomplete(server, make_client):
    pages = {
        None: ([item(own("a", 20))], "c1"),
        "c1": ([item(own("b", 19))], "c2"),
        "c2": ([item(own("c", 18))], "c1"),
    }
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert (result.complete, result.stop, result.pages) == (False, "repeated_cursor", 3)
    assert len(result.posts) == 3 and len(server.calls) == 3


def test_feed_stops_when_a_page_returns_its_own_cursor(server, make_client):
    pages = {None: ([item(own("a", 20))], "c1"), "c1": ([], "c1")}
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert (result.complete, result.stop, result.pages) == (False, "repeated_cursor", 2)


def test_feed_stops_at_the_page_cap_as_incomplete(server, make_client):
    def handler(url):
        n = int(url.query.get("cursor", "0"))
        return reply({"feed": [item(own(f"p{n}", 20))], "cursor": str(n + 1)})

    server.route(GET_AUTHOR_FEED, handler)
    result = using(make_client(max_pages=3), lambda c: c.author_feed(DID, None))
    assert (result.complete, result.stop, result.pages) == (False, "page_cap", 3)
    assert len(server.calls) == 3 and len(result.posts) == 3


@pytest.mark.parametrize("cap, pages_read", [(150, 2), (100, 1)])
def test_feed_stops_at_the_post_cap_with_at_most_that_many_posts(cap, pages_read, server, make_client):
    def handler(url):
        n = int(url.query.get("cursor", "0"))
        return reply({"feed": [item(own(f"p{n}-{i}", 20)) for i in range(100)], "cursor": str(n + 1)})

    server.route(GET_AUTHOR_FEED, handler)
    result = using(make_client(), lambda c: c.author_feed(DID, None, max_posts=cap))
    assert (result.complete, result.stop, result.pages) == (False, "post_cap", pages_read)
    assert len(result.posts) == cap
    assert result.posts[0].uri == uri_of(DID, "p0-0")


def test_an_empty_page_with_a_cursor_is_not_the_end(server, make_client):
    pages = {None: ([], "c1"), "c1": ([item(own("a", 20))], None)}
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, SINCE))
    assert (result.stop, result.pages, len(result.posts)) == ("end", 2, 1)


def long_post(rkey: str, d: int, size: int) -> dict:
    """An own post whose text is `size` characters long."""
    view = own(rkey, d)
    view["record"]["text"] = "x" * size
    return view


def test_an_oversized_feed_page_is_asked_again_for_fewer_items_from_the_same_cursor(server, make_client):

    def handler(url):
        limit = int(url.query["limit"])
        cursor = url.query.get("cursor")
        if cursor is None:
            return reply({"feed": [item(own("a", 20))], "cursor": "c1"})
        if cursor == "c1" and limit > 6:  # ~800 bytes an item: over the cap unless 6 or fewer
            return reply({"feed": [item(long_post(f"big{n}", 19, 400)) for n in range(limit)]})
        if cursor == "c1":
            return reply({"feed": [item(own("b", 19))], "cursor": "c2"})
        return reply({"feed": [item(own("c", 18))]})

    server.route(GET_AUTHOR_FEED, handler)
    result = using(make_client(max_response_bytes=15_000), lambda c: c.author_feed(DID, None))
    assert [p.uri for p in result.posts] == [uri_of(DID, r) for r in "abc"]
    assert (result.complete, result.stop, result.pages) == (True, "end", 3)
    asked = [(url.query.get("cursor"), url.query["limit"]) for url in server.urls()]
    # 100 -> 25 -> 6 items from c1, then the next page at the full size again.
    assert asked == [(None, "100"), ("c1", "100"), ("c1", "25"), ("c1", "6"), ("c2", "100")]


def test_a_feed_page_too_large_even_for_one_item_is_an_error_stop(server, make_client):
    def handler(url):
        if url.query.get("cursor") is None:
            return reply({"feed": [item(own("a", 20))], "cursor": "c1"})
        return reply({"feed": [item(long_post("huge", 19, 30_000))], "cursor": "c2"})

    server.route(GET_AUTHOR_FEED, handler)
    result = using(make_client(max_response_bytes=20_000), lambda c: c.author_feed(DID, None))
    assert (result.complete, result.stop, result.pages) == (False, "error", 1)
    assert isinstance(result.error, ResponseTooLarge)
    assert [url.query["limit"] for url in server.urls()] == ["100", "100", "25", "6", "1"]


def test_an_error_mid_feed_returns_the_posts_read_so_far_as_incomplete(mocked, make_client):
    mocked.get(xrpc(GET_AUTHOR_FEED), payload={"feed": [item(own("a", 20))], "cursor": "c1"})
    mocked.get(xrpc(GET_AUTHOR_FEED), status=503, repeat=True)
    client = make_client()
    result = using(client, lambda c: c.author_feed(DID, None))
    assert (result.complete, result.stop, result.pages) == (False, "error", 1)
    assert [p.uri for p in result.posts] == [uri_of(DID, "a")]
    assert isinstance(result.error, RetriesExhausted) and result.error.status == 503
    assert requests_made(mocked) == 1 + 3


def test_an_xrpc_error_on_a_later_page_is_an_error_stop_not_an_account_status(mocked, make_client):
    mocked.get(xrpc(GET_AUTHOR_FEED), payload={"feed": [item(own("a", 20))], "cursor": "c1"})
    mocked.get(xrpc(GET_AUTHOR_FEED), status=400, payload={"error": "InvalidRequest", "message": "Profile not found"})
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert (result.stop, result.complete, len(result.posts)) == ("error", False, 1)
    assert isinstance(result.error, XrpcError)


@pytest.mark.parametrize(
    "body, status",
    [
        ({"error": "InvalidRequest", "message": "Profile not found"}, "not_found"),
        ({"error": "AccountDeactivated", "message": "Account is deactivated"}, "deactivated"),
        ({"error": "AccountTakedown", "message": "Account has been taken down"}, "takendown"),
    ],
)
def test_an_unavailable_actor_on_the_first_page_raises_account_unavailable(body, status, server, make_client):
    server.route(GET_AUTHOR_FEED, lambda url: reply(body, status=400))
    with pytest.raises(AccountUnavailable) as caught:
        using(make_client(), lambda c: c.author_feed(DID, None))
    assert (caught.value.did, caught.value.status) == (DID, status)
    assert len(server.calls) == 1


def test_a_hostile_cursor_is_sent_back_exactly_and_cannot_inject_parameters(server, make_client):
    hostile = "a&actor=did:plc:evil#x+y%2Bz w=&limit=1"
    pages = {None: ([item(own("a", 20))], hostile), hostile: ([item(own("b", 19))], None)}
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert result.stop == "end"
    second = server.urls()[1]
    assert second.query.getall("cursor") == [hostile]
    assert second.query.getall("actor") == [DID]
    assert second.query.getall("limit") == ["100"]
    assert "#" not in str(second) and second.fragment == ""


def test_garbage_items_are_dropped_without_failing_the_page(server, make_client, caplog):
    bad_uri = own("x", 20) | {"uri": "at://nope"}
    stolen = own("y", 20) | {"uri": uri_of(OTHER, "y")}
    pages = {None: (["garbage", {"post": None}, item(bad_uri), item(stolen), item(own("ok", 20))], None)}
    server.route(GET_AUTHOR_FEED, feed_handler(pages))
    with caplog.at_level(logging.WARNING):
        result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert [p.uri for p in result.posts] == [uri_of(DID, "ok")]
    assert result.complete


@pytest.mark.parametrize("cursor", [123, "", ["c"]])
def test_an_unusable_cursor_stops_the_feed_as_incomplete(cursor, server, make_client):
    server.route(GET_AUTHOR_FEED, lambda url: reply({"feed": [item(own("a", 20))], "cursor": cursor}))
    result = using(make_client(), lambda c: c.author_feed(DID, None))
    assert (result.stop, result.complete, len(result.posts)) == ("error", False, 1)


def test_author_feed_rejects_a_naive_since(make_client):
    with pytest.raises(ValueError):
        using(make_client(), lambda c: c.author_feed(DID, datetime(2026, 3, 1)))


def test_author_feed_of_a_malformed_did_is_not_found_without_a_request(server, make_client):
    with pytest.raises(AccountUnavailable):
        using(make_client(), lambda c: c.author_feed("bsky.app", None))
    assert server.calls == []


# --- getPosts ----------------------------------------------------------------------------------


def posts_handler(deleted: set[str] = frozenset()):
    def handler(url):
        views = []
        for uri in url.query.getall("uris"):
            if uri not in deleted:
                did, rkey = uri.split("/")[2], uri.split("/")[4]
                views.append(post_view(did, rkey))
        return reply({"posts": views})

    return handler


def test_get_posts_asks_25_uris_per_call_and_leaves_deleted_posts_out(server, make_client):
    uris = [uri_of(did_n(i % 7), f"r{i}") for i in range(60)]
    deleted = {uris[0], uris[31], uris[59]}
    server.route(GET_POSTS, posts_handler(deleted))
    found = using(make_client(), lambda c: c.get_posts(uris))
    assert sorted(len(url.query.getall("uris")) for url in server.urls()) == [10, 25, 25]
    assert set(found) == set(uris) - deleted
    assert found[uris[1]].uri == uris[1]


def test_get_posts_ignores_answers_it_did_not_ask_for_and_skips_invalid_uris(server, make_client):
    def handler(url):
        return reply({"posts": [post_view(DID, "asked"), post_view(DID, "unasked")]})

    server.route(GET_POSTS, handler)
    found = using(make_client(), lambda c: c.get_posts([uri_of(DID, "asked"), "at://bad uri"]))
    assert list(found) == [uri_of(DID, "asked")]
    assert server.urls()[0].query.getall("uris") == [uri_of(DID, "asked")]


def test_a_failed_get_posts_call_raises_instead_of_reporting_posts_as_deleted(server, make_client):
    uris = [uri_of(DID, f"r{i}") for i in range(30)]

    def handler(url):
        if uris[0] in url.query.getall("uris"):
            return reply({"error": "InternalServerError"}, status=501)
        return posts_handler()(url)

    server.route(GET_POSTS, handler)
    with pytest.raises(BatchFailed) as caught:
        using(make_client(), lambda c: c.get_posts(uris))
    assert caught.value.failed == uris[:25]
    assert set(caught.value.partial) == set(uris[25:])


# --- retries -----------------------------------------------------------------------------------

TRANSIENT = {
    "429": lambda: dict(status=429, payload={"error": "RateLimitExceeded"}, headers={"Retry-After": "0"}),
    "500": lambda: dict(status=500, payload={"error": "InternalServerError", "message": "oops"}),
    "502-html": lambda: dict(status=502, body="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"),
    "503": lambda: dict(status=503, body=""),
    "504": lambda: dict(status=504, payload={"error": "GatewayTimeout"}),
    "timeout": lambda: dict(exception=TimeoutError()),
    "read-timeout": lambda: dict(exception=aiohttp.ServerTimeoutError("Timeout on reading data from socket")),
    "connect-timeout": lambda: dict(exception=aiohttp.ConnectionTimeoutError("connect timed out")),
    "reset": lambda: dict(exception=aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer")),
    "disconnect": lambda: dict(exception=aiohttp.ServerDisconnectedError()),
    "payload-cut": lambda: dict(exception=aiohttp.ClientPayloadError("Response payload is not completed")),
    "truncated-json": lambda: dict(status=200, body='{"profiles": [{"did": "did:plc:'),
    "html-200": lambda: dict(status=200, body="<html>maintenance</html>", content_type="text/html"),
    "json-array": lambda: dict(status=200, payload=[1, 2, 3]),
    "json-without-list": lambda: dict(status=200, payload={"profiles": None}),
    "bad-utf8": lambda: dict(status=200, body=b'{"profiles": ["\xff\xfe"]}'),
}


@pytest.mark.parametrize("failure", list(TRANSIENT))
def test_a_transient_failure_is_retried_and_then_succeeds(failure, mocked, make_client):
    mocked.get(xrpc(GET_PROFILES), **TRANSIENT[failure]())
    mocked.get(xrpc(GET_PROFILES), payload={"profiles": [profile_view(DID)]})
    client = make_client()
    result = using(client, lambda c: c.get_profiles([DID]))
    assert set(result.profiles) == {DID}
    assert requests_made(mocked) == 2
    assert client.counters.requests == {GET_PROFILES: 2}
    assert client.counters.retries == 1
    assert sum(client.counters.errors.values()) == 1


def test_a_429_pauses_every_process_until_retry_after_and_then_retries(mocked, make_client, limiter):
    mocked.get(xrpc(GET_PROFILE), status=429, payload={"error": "RateLimitExceeded"}, headers={"Retry-After": "0.2"})
    mocked.get(xrpc(GET_PROFILE), payload=profile_view(DID))
    client = make_client()
    before = time.time()
    assert using(client, lambda c: c.account_status(DID)) == "active"
    elapsed = time.time() - before
    (pause,) = limiter.pauses
    assert before + 0.2 <= pause <= time.time() + 0.2
    assert limiter.state()["pause_until"] == pytest.approx(pause)
    assert elapsed >= 0.19  # the retry waited for the pause
    assert client.counters.rate_limited == 1 and client.counters.errors == {"rate_limited": 1}


def test_a_429_without_retry_after_still_pauses_for_a_backoff(mocked, make_client, limiter):
    mocked.get(xrpc(GET_PROFILE), status=429, payload={"error": "RateLimitExceeded"})
    mocked.get(xrpc(GET_PROFILE), payload=profile_view(DID))
    assert using(make_client(), lambda c: c.account_status(DID)) == "active"
    assert len(limiter.pauses) == 1


def test_retry_after_accepts_seconds_and_http_dates_measured_against_the_server_clock():
    now = time.time()
    assert retry_after({"Retry-After": "7"}) == 7
    assert retry_after({"Retry-After": "1.5"}) == 1.5
    assert retry_after({"Retry-After": "-3"}) == 0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "nan"}) is None
    server_clock = now - 3600  # an hour behind ours: only the difference to Date counts
    headers = {"Retry-After": formatdate(server_clock + 30, usegmt=True), "Date": formatdate(server_clock, usegmt=True)}
    assert 29 <= retry_after(headers) <= 31
    assert 28 <= retry_after({"Retry-After": formatdate(now + 30, usegmt=True)}) <= 31


def test_retries_give_up_after_max_attempts(mocked, make_client):
    mocked.get(xrpc(GET_PROFILE), status=503, repeat=True)
    client = make_client(max_attempts=4)
    with pytest.raises(RetriesExhausted) as caught:
        using(client, lambda c: c.account_status(DID))
    assert requests_made(mocked) == 4
    assert (caught.value.attempts, caught.value.kind, caught.value.status) == (4, "http_503", 503)
    assert client.counters.retries == 3 and client.counters.errors == {"http_503": 4}


def test_a_single_attempt_setting_means_no_retry(mocked, make_client):
    mocked.get(xrpc(GET_PROFILE), exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(RetriesExhausted):
        using(make_client(max_attempts=1), lambda c: c.account_status(DID))
    assert requests_made(mocked) == 1


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling(mocked, make_client, monkeypatch):
    ceilings = []
    monkeypatch.setattr("etl.appview.client.random.uniform", lambda low, high: ceilings.append((low, high)) or 0.0)
    mocked.get(xrpc(GET_PROFILE), status=500, repeat=True)
    with pytest.raises(RetriesExhausted):
        using(make_client(max_attempts=5, backoff_base=0.001, backoff_max=0.005), lambda c: c.account_status(DID))
    assert ceilings == [(0.0, 0.001), (0.0, 0.002), (0.0, 0.004), (0.0, 0.005)]


def test_each_retry_logs_a_warning_with_method_cause_and_attempt(mocked, make_client, caplog):
    mocked.get(xrpc(GET_PROFILE), status=502, body="<html>bad gateway</html>")
    mocked.get(xrpc(GET_PROFILE), payload=profile_view(DID))
    with caplog.at_level(logging.WARNING, logger="etl.appview"):
        using(make_client(), lambda c: c.account_status(DID))
    (record,) = [r for r in caplog.records if r.name == "etl.appview"]
    assert GET_PROFILE in record.getMessage() and "502" in record.getMessage()
    assert "attempt 1 of 3" in record.getMessage()


@pytest.mark.parametrize(
    "status, error, message",
    [
        (400, "InvalidRequest", "Error: actors must be a did or handle"),
        (401, "AuthMissing", "Authentication Required"),
        (403, "Forbidden", "no"),
        (404, "MethodNotImplemented", "Method Not Implemented"),
        (413, "PayloadTooLarge", "too large"),
        (501, "MethodNotImplemented", "not here"),
    ],
)
def test_other_errors_fail_at_once_with_the_xrpc_error_name(status, error, message, mocked, make_client):
    mocked.get(xrpc(GET_PROFILES), status=status, payload={"error": error, "message": message}, repeat=True)
    client = make_client()
    with pytest.raises(BatchFailed) as caught:
        using(client, lambda c: c.get_profiles([DID]))
    (failure,) = caught.value.errors
    assert isinstance(failure, XrpcError)
    assert (failure.status, failure.error, failure.message, failure.method) == (status, error, message, GET_PROFILES)
    assert error in str(failure)
    assert requests_made(mocked) == 1
    assert client.counters.retries == 0


def test_a_non_json_error_page_is_an_xrpc_error_without_a_name(mocked, make_client):
    mocked.get(xrpc(GET_PROFILE), status=403, body="<html>Forbidden by WAF</html>", content_type="text/html")
    with pytest.raises(XrpcError) as caught:
        using(make_client(), lambda c: c.account_status(DID))
    assert caught.value.error is None and "Forbidden by WAF" in caught.value.message


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_names_the_target_host(status, mocked, make_client):
    mocked.get(xrpc(GET_PROFILE), status=status, headers={"Location": "https://evil.example/xrpc/steal"})
    mocked.get("https://evil.example/xrpc/steal", payload=profile_view(DID))
    with pytest.raises(RedirectError) as caught:
        using(make_client(), lambda c: c.account_status(DID))
    assert caught.value.host == "evil.example" and "evil.example" in str(caught.value)
    assert requests_made(mocked) == 1
    assert all(url.host == "appview.test" for _, url in mocked.requests)


def test_an_answer_declaring_a_length_above_the_cap_is_refused_unread_and_not_retried(mocked, make_client):
    body = '{"did": "' + "x" * 5000 + '"}'
    mocked.get(xrpc(GET_PROFILE), body=body, headers={"Content-Length": str(len(body))}, repeat=True)
    client = make_client(max_response_bytes=2048)
    with pytest.raises(ResponseTooLarge) as caught:
        using(client, lambda c: c.account_status(DID))
    assert caught.value.size == len(body)
    assert requests_made(mocked) == 1
    assert client.counters.bytes_received == 0


def test_an_answer_without_length_is_cut_off_once_it_passes_the_cap(mocked, make_client):
    # ~100 kB: aioresponses feeds the body at once and cannot take more than 128 KiB.
    body = '{"profiles": [' + ",".join(['{"did": "did:plc:x"}'] * 5000) + "]}"
    mocked.get(xrpc(GET_PROFILES), body=body, repeat=True)
    client = make_client(max_response_bytes=10_000)
    with pytest.raises(BatchFailed) as caught:
        using(client, lambda c: c.get_profiles([DID]))
    assert isinstance(caught.value.errors[0], ResponseTooLarge)
    assert requests_made(mocked) == 1
    assert client.counters.bytes_received < len(body)


def test_a_tls_failure_is_not_retried(mocked, make_client):
    error = aiohttp.ClientSSLError(aiohttp.client_reqrep.ConnectionKey("appview.test", 443, True, True, None, None, None), OSError("bad cert"))
    mocked.get(xrpc(GET_PROFILE), exception=error, repeat=True)
    with pytest.raises(AppViewError, match="TLS"):
        using(make_client(), lambda c: c.account_status(DID))
    assert requests_made(mocked) == 1


# --- rate limiter, session, counters -----------------------------------------------------------


def test_every_request_waits_for_the_limiter_and_reports_rate_limit_headers(mocked, make_client, limiter):
    headers = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "2999", "RateLimit-Reset": str(int(time.time()) + 300)}
    mocked.get(xrpc(GET_PROFILE), status=500, headers=headers)
    mocked.get(xrpc(GET_PROFILE), payload=profile_view(DID), headers=headers)
    using(make_client(), lambda c: c.account_status(DID))
    assert limiter.acquired == 2
    assert len(limiter.observed) == 2 and limiter.observed[-1]["RateLimit-Remaining"] == "2999"


def test_requests_carry_the_project_user_agent(server, make_client):
    server.route(GET_PROFILE, lambda url: reply(profile_view(DID)))
    using(make_client(), lambda c: c.account_status(DID))
    (_, _, kwargs) = server.calls[0]
    assert kwargs["headers"]["User-Agent"] == USER_AGENT and USER_AGENT.startswith("dopplersky-workers/")
    assert kwargs["allow_redirects"] is False


def test_the_client_closes_only_a_session_it_created(make_client, client_settings, limiter):
    async def go():
        own_client = make_client()
        async with own_client:
            session = own_client._session
        given = aiohttp.ClientSession()
        async with AppView(client_settings, limiter=limiter, session=given):
            pass
        still_open = not given.closed
        await given.close()
        return session.closed, own_client._session, still_open

    assert run_coro(go()) == (True, None, True)


def test_the_client_must_be_used_as_a_context_manager(make_client):
    with pytest.raises(RuntimeError, match="async with"):
        run_coro(make_client().account_status(DID))


def test_counters_count_bytes_and_merge_across_processes(server, make_client):
    server.route(GET_PROFILE, lambda url: reply(profile_view(DID)))
    client = make_client()
    using(client, lambda c: c.account_status(DID))
    assert client.counters.bytes_received > 100
    total = Counters(requests={GET_PROFILE: 2}, retries=1, errors={"timeout": 2})
    total.merge(client.counters).merge(client.counters.as_dict())
    assert total.requests == {GET_PROFILE: 4}
    assert total.retries == 1 and total.errors == {"timeout": 2}
    assert total.bytes_received == 2 * client.counters.bytes_received
    assert total.total_requests == 4
    assert set(total.as_dict()) == {
        "requests",
        "retries",
        "rate_limited",
        "bytes_received",
        "errors",
        "throttle_seconds",
        "parse_seconds",
    }
    assert total.parse_seconds > 0  # decoding the two answers took some CPU
