"""XRPC answers have the lexicon shapes and the real service's errors."""

from __future__ import annotations

import pytest

from etl.sim import syntax
from etl.sim.lexicon import Lexicons, xrpc_error_errors
from etl.sim.population import MALFORMED, REPLY, SELF_REPLY, Population, Post, Repost

from .conftest import Client, active_users, user_where

PROFILES = "app.bsky.actor.getProfiles"
PROFILE = "app.bsky.actor.getProfile"
FEED = "app.bsky.feed.getAuthorFeed"
POSTS = "app.bsky.feed.getPosts"


def _by_status(population: Population, status: str) -> list[int]:
    return [i for i in range(population.size) if population.status(i, 0) == status]


def _valid_records(lexicons: Lexicons, population: Population, feed: list[dict]) -> None:
    """Records match app.bsky.feed.post, except the createdAt the world makes malformed on purpose."""
    for item in feed:
        for view in (item["post"], item.get("reply", {}).get("parent"), item.get("reply", {}).get("root")):
            if not view or view.get("notFound"):
                continue
            errors = lexicons.errors("app.bsky.feed.post", view["record"])
            if errors:
                assert errors == [f"createdAt: {view['record']['createdAt']!r} is not a 'datetime'"]
                assert not syntax.is_datetime(view["record"]["createdAt"])


def test_get_profiles_answers_in_input_order_leaving_out_inactive_accounts(
    client: Client, population: Population, lexicons: Lexicons
) -> None:
    active = active_users(population)[:20]
    inactive = [_by_status(population, s)[0] for s in ("deactivated", "takendown", "not_found")]
    order = active[:10] + inactive + active[10:]
    actors = [population.did(i) for i in order]
    actors[3] = population.handle(order[3], 0)  # a handle works as well as a DID
    answer = client.xrpc(PROFILES, {"actors": actors})
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert lexicons.errors(PROFILES, body) == []
    assert [p["did"] for p in body["profiles"]] == [population.did(i) for i in active]
    profile = body["profiles"][0]
    numbers = population.profile(active[0], 0)
    assert (profile["followersCount"], profile["followsCount"], profile["postsCount"]) == (
        numbers.followers, numbers.follows, numbers.posts_count
    )


@pytest.mark.parametrize(
    "actors",
    [[], ["did:plc:" + "a" * 24] * 26, ["not a handle"], ["@alice.bsky.social"]],
    ids=["none", "26", "malformed", "at-sign"],
)
def test_get_profiles_rejects_bad_requests_whole(client: Client, actors: list[str]) -> None:
    answer = client.xrpc(PROFILES, {"actors": actors})
    assert answer.status == 400 and xrpc_error_errors(answer.json()) == []
    assert answer.json()["error"] == "InvalidRequest" and answer.json()["message"]


def test_get_profile_answers_or_says_why_not(client: Client, population: Population, lexicons: Lexicons) -> None:
    index = active_users(population)[5]
    body = client.xrpc(PROFILE, {"actor": population.did(index)}).json()
    assert lexicons.errors(PROFILE, body) == []
    pinned = user_where(population, lambda i: population.pinned(i, 0) is not None)
    body = client.xrpc(PROFILE, {"actor": population.handle(pinned, 0)}).json()
    assert body["pinnedPost"]["uri"] == population.uri(population.pinned(pinned, 0))
    expected = {
        "deactivated": ("AccountDeactivated", None),
        "takendown": ("AccountTakedown", None),
        "not_found": ("InvalidRequest", "Profile not found"),
    }
    for status, (error, message) in expected.items():
        answer = client.xrpc(PROFILE, {"actor": population.did(_by_status(population, status)[0])})
        assert answer.status == 400 and xrpc_error_errors(answer.json()) == []
        assert answer.json()["error"] == error and (message is None or answer.json()["message"] == message)
    unknown = client.xrpc(PROFILE, {"actor": "nobody.bsky.social"})
    assert unknown.status == 400 and unknown.json() == {"error": "InvalidRequest", "message": "Profile not found"}
    assert client.xrpc(PROFILE, {"actor": "bad handle"}).json()["error"] == "InvalidRequest"
    assert client.xrpc(PROFILE).status == 400


def test_author_feed_items_have_the_lexicon_shape_with_replies_reposts_and_pins(
    client: Client, population: Population, lexicons: Lexicons
) -> None:
    def has(index: int, test) -> bool:
        return any(test(row[3]) for row in population.timeline(index, 0).rows[-100:])

    index = user_where(
        population,
        lambda i: population.pinned(i, 0) is not None
        and has(i, lambda e: isinstance(e, Repost))
        and has(i, lambda e: isinstance(e, Post) and e.kind == REPLY)
        and has(i, lambda e: isinstance(e, Post) and e.kind == SELF_REPLY),
    )
    body = client.xrpc(FEED, {"actor": population.did(index), "limit": 100, "includePins": "true"}).json()
    assert lexicons.errors(FEED, body) == []
    _valid_records(lexicons, population, body["feed"])
    reasons = [item.get("reason", {}).get("$type") for item in body["feed"]]
    assert reasons[0] == "app.bsky.feed.defs#reasonPin" and reasons.count("app.bsky.feed.defs#reasonPin") == 1
    reposts = [item for item in body["feed"] if reasons[body["feed"].index(item)] == "app.bsky.feed.defs#reasonRepost"]
    assert reposts and all(item["reason"]["by"]["did"] == population.did(index) for item in reposts)
    replies = [item for item in body["feed"] if "reply" in item]
    assert replies and all("reply" in item["post"]["record"] for item in replies)
    assert any(item["reply"]["parent"]["$type"] == "app.bsky.feed.defs#postView" for item in replies)
    assert all(item["post"]["author"]["did"] == population.did(index) for item in body["feed"] if "reason" not in item)


def test_malformed_created_at_is_served_as_is(client: Client, population: Population, lexicons: Lexicons) -> None:
    def odd(index: int) -> bool:
        return any(isinstance(row[3], Post) and row[3].variant == MALFORMED for row in population.timeline(index, 0).rows)

    index = user_where(population, odd)
    post = next(row[3] for row in population.timeline(index, 0).rows if isinstance(row[3], Post) and row[3].variant == MALFORMED)
    body = client.xrpc(POSTS, {"uris": [population.uri(post)]}).json()
    assert body["posts"][0]["record"]["createdAt"] == population.created_at(post)
    assert lexicons.errors(POSTS, body) == []  # the record is `unknown` in postView: the AppView passes it on


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "less than 1"),
        ({"limit": 101}, "greater than 100"),
        ({"limit": "ten"}, "integer"),
        ({"includePins": "yes"}, "boolean"),
        ({"cursor": "!!not-ours!!"}, "cursor"),
    ],
)
def test_author_feed_validates_its_parameters(client: Client, population: Population, params: dict, message: str) -> None:
    answer = client.xrpc(FEED, {"actor": population.did(active_users(population)[0]), **params})
    assert answer.status == 400 and answer.json()["error"] == "InvalidRequest" and message in answer.json()["message"]


def test_author_feed_of_missing_or_inactive_actor_is_profile_not_found(client: Client, population: Population) -> None:
    actors = [population.did(_by_status(population, s)[0]) for s in ("deactivated", "takendown", "not_found")]
    for actor in [*actors, "ghost.bsky.social"]:
        answer = client.xrpc(FEED, {"actor": actor})
        assert answer.status == 400 and answer.json() == {"error": "InvalidRequest", "message": "Profile not found"}


@pytest.mark.parametrize("feed_filter", ["posts_with_replies", "posts_no_replies", "posts_with_media",
                                         "posts_and_author_threads", "posts_with_video", "something_new"])
def test_every_feed_filter_is_accepted_and_no_replies_has_no_replies(
    client: Client, population: Population, feed_filter: str
) -> None:
    index = user_where(population, lambda i: population.profile(i, 0).posts_count > 150)
    body = client.xrpc(FEED, {"actor": population.did(index), "limit": 100, "filter": feed_filter}).json()
    assert body["feed"]
    if feed_filter == "posts_no_replies":
        # Reposts stay whatever they repost, as in the AppView; the author's own replies go.
        assert all("reply" not in item["post"]["record"] for item in body["feed"] if "reason" not in item)
    if feed_filter == "posts_with_media":
        assert all("embed" in item["post"] and "reason" not in item for item in body["feed"])
    if feed_filter in ("posts_with_replies", "something_new"):
        assert len(body["feed"]) == 100


def test_get_posts_answers_in_input_order_leaving_out_deleted_and_unknown(
    client: Client, population: Population, lexicons: Lexicons
) -> None:
    index = user_where(population, lambda i: population.profile(i, 0).posts_count > 30)
    posts = [row[3] for row in population.timeline(index, 0).rows if isinstance(row[3], Post)][-20:]
    deleted = next(
        p for i in active_users(population) for e in range(-40, 1) for p in population.posts(i, e)
        if p.deleted_at is not None and p.deleted_at <= population.now_us(0)
    )
    uris = [population.uri(p) for p in posts[:10]]
    uris += [population.uri(deleted), f"at://{population.did(index)}/app.bsky.feed.post/3aaaaaaaaaaaa"]
    uris += [population.uri(p) for p in posts[10:]]
    body = client.xrpc(POSTS, {"uris": uris}).json()
    assert lexicons.errors(POSTS, body) == []
    assert [p["uri"] for p in body["posts"]] == [population.uri(p) for p in posts]
    too_many = client.xrpc(POSTS, {"uris": uris + uris})
    assert too_many.status == 400 and too_many.json()["error"] == "InvalidRequest"
    assert client.xrpc(POSTS, {"uris": ["https://example.com"]}).status == 400
    assert client.xrpc(POSTS).status == 400


def test_unknown_methods_are_not_implemented_in_json(client: Client) -> None:
    answer = client.xrpc("app.bsky.feed.getTimeline")
    assert answer.status == 501 and answer.json()["error"] == "MethodNotImplemented"
    assert xrpc_error_errors(answer.json()) == [] and xrpc_error_errors({"message": "no name"})
    assert client.xrpc("_health").json() == {"version": "sim"}


def test_lone_surrogates_go_out_as_json_escapes() -> None:
    from etl.sim.views import dumps

    assert dumps({"a": "x\ud800y", "b": "🦋"}) == b'{"a":"x\\ud800y","b":"\\ud83e\\udd8b"}'
    assert dumps({"b": "🦋\u0000"}) == '{"b":"🦋\\u0000"}'.encode()
