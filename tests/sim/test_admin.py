"""The /_sim/ admin contract that tests, benchmarks and the demo rely on."""

from __future__ import annotations

from etl.sim import syntax
from etl.sim.lexicon import Lexicons
from etl.sim.population import Population
from etl.sim.server import ThreadedServer

from .conftest import START, USERS, Client, active_users, user_where


def test_users_are_listed_in_pages_with_did_handle_and_status(client: Client, population: Population) -> None:
    first = client.get("/_sim/users", {"limit": 400}).json()
    assert len(first["users"]) == 400 and first["next_offset"] == 400
    assert set(first["users"][0]) == {"did", "handle", "status"}
    last = client.get("/_sim/users", {"offset": 800, "limit": 400}).json()
    assert len(last["users"]) == USERS - 800 and "next_offset" not in last
    users = client.users()
    assert [u["did"] for u in users] == [population.did(i) for i in range(USERS)]
    assert {u["status"] for u in users} == {"active", "deactivated", "takendown", "not_found"}
    assert len(client.get("/_sim/users").json()["users"]) == 1000
    assert client.get("/_sim/users", {"limit": 10_001}).status == 400
    assert client.get("/_sim/users", {"offset": -1}).status == 400


def test_truth_tells_the_profile_and_every_own_post_as_served(
    client: Client, population: Population, lexicons: Lexicons
) -> None:
    index = user_where(population, lambda i: population.profile(i, 0).posts_count > 20)
    did = population.did(index)
    truth = client.truth(did)
    assert set(truth) == {
        "did", "handle", "status", "displayName", "avatar", "followersCount", "followsCount",
        "postsCount", "posts", "feed_items", "feed_items_since",
    }
    profile = client.xrpc("app.bsky.actor.getProfile", {"actor": did}).json()
    for key in ("handle", "followersCount", "followsCount", "postsCount"):
        assert truth[key] == profile[key]
    assert truth["displayName"] == profile.get("displayName") and truth["avatar"] == profile.get("avatar")
    assert len(truth["posts"]) == truth["postsCount"]
    post = truth["posts"][0]
    assert set(post) == {"uri", "createdAt", "indexedAt", "likeCount", "replyCount", "repostCount", "quoteCount"}
    served = client.xrpc("app.bsky.feed.getPosts", {"uris": [post["uri"]]}).json()["posts"][0]
    assert post["createdAt"] == served["record"]["createdAt"] and post["indexedAt"] == served["indexedAt"]
    assert all(post[k] == served[k] for k in ("likeCount", "replyCount", "repostCount", "quoteCount"))
    assert lexicons.errors("app.bsky.actor.defs#profileViewDetailed", truth)  # admin truth is no lexicon object
    assert syntax.is_datetime(post["indexedAt"])


def test_truth_of_an_inactive_account_has_no_numbers(client: Client, population: Population) -> None:
    index = next(i for i in range(USERS) if population.status(i, 0) == "takendown")
    truth = client.truth(population.did(index))
    assert truth["status"] == "takendown"
    assert truth["followersCount"] is None and truth["postsCount"] is None and truth["displayName"] is None
    assert truth["posts"] == [] and truth["feed_items"] == 0
    assert client.get("/_sim/truth", {"did": "did:plc:" + "a" * 24}).status == 404
    assert client.get("/_sim/truth", {"did": population.did(index), "since": "last tuesday"}).status == 400


def test_the_clock_advances_by_whole_days_at_noon(own_client: Client) -> None:
    clock = own_client.get("/_sim/clock").json()
    assert clock == {"day": 0, "now": f"{START.isoformat()}T12:00:00.000Z", "date": START.isoformat()}
    moved = own_client.post("/_sim/advance", params={"days": 3}).json()
    assert moved == {"day": 3, "now": "2026-01-04T12:00:00.000Z"}
    assert own_client.post("/_sim/advance").json()["day"] == 4
    assert own_client.get("/_sim/clock").json()["date"] == "2026-01-05"
    assert own_client.post("/_sim/advance", params={"days": -1}).status == 400
    assert own_client.get("/_sim/info").json() == {"users": USERS, "seed": 7, "start": "2026-01-01", "day": 4, "activity": 1.0}


def test_counts_rise_and_posts_appear_only_when_the_day_advances(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    active = active_users(population)[:60]
    actors = [population.did(i) for i in active[:25]]
    before = own_client.xrpc("app.bsky.actor.getProfiles", {"actors": actors}).json()
    assert own_client.xrpc("app.bsky.actor.getProfiles", {"actors": actors}).json() == before
    index = user_where(population, lambda i: population.profile(i, 1).posts_count > population.profile(i, 0).posts_count)
    truth = own_client.truth(population.did(index))
    own_client.post("/_sim/advance")
    after = own_client.truth(population.did(index))
    assert after["postsCount"] > truth["postsCount"]
    old = {p["uri"]: p for p in truth["posts"]}
    for post in after["posts"]:
        if post["uri"] in old:
            assert all(post[k] >= old[post["uri"]][k] for k in ("likeCount", "replyCount", "repostCount", "quoteCount"))


def test_events_name_the_swaps_handle_changes_and_deactivations_of_a_day(
    client: Client, population: Population
) -> None:
    found = {}
    for day in (1, 2, 3):
        events = client.get("/_sim/events", {"day": day}).json()
        assert set(events) == {"day", "handle_swaps", "handle_changes", "deactivations"} and events["day"] == day
        for a, b in events["handle_swaps"]:
            ia, ib = population.index_of_did(a), population.index_of_did(b)
            assert population.handle(ia, day) == population.handle(ib, day - 1)
            found["swap"] = True
        for change in events["handle_changes"]:
            index = population.index_of_did(change["did"])
            assert population.handle(index, day) == change["new"] != change["old"] == population.handle(index, day - 1)
        for did in events["deactivations"]:
            index = population.index_of_did(did)
            assert population.status(index, day - 1) == "active" and population.status(index, day) == "deactivated"
            found["deactivation"] = True
    assert found == {"swap": True, "deactivation": True}


def test_a_swap_is_visible_through_get_profiles_after_advancing(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    day, (a, b) = next((d, pair) for d in (1, 2, 3) for pair in population.swaps_on(d))
    own_client.post("/_sim/advance", params={"days": day - 1})
    dids = [population.did(a), population.did(b)]
    before = [p["handle"] for p in own_client.xrpc("app.bsky.actor.getProfiles", {"actors": dids}).json()["profiles"]]
    own_client.post("/_sim/advance")
    after = [p["handle"] for p in own_client.xrpc("app.bsky.actor.getProfiles", {"actors": dids}).json()["profiles"]]
    assert after == before[::-1]
    assert own_client.xrpc("app.bsky.actor.getProfile", {"actor": before[0]}).json()["did"] == dids[1]


def test_stats_count_requests_statuses_and_reset(own_client: Client, sim: ThreadedServer) -> None:
    did = sim.population.did(1)
    own_client.xrpc("app.bsky.actor.getProfiles", {"actors": [did]})
    own_client.xrpc("app.bsky.actor.getProfiles", {"actors": []})
    own_client.xrpc("app.bsky.feed.getAuthorFeed", {"actor": did})
    own_client.get("/_sim/users")
    stats = own_client.get("/_sim/stats").json()
    assert stats == {
        "requests": {"app.bsky.actor.getProfiles": 2, "app.bsky.feed.getAuthorFeed": 1},
        "status_codes": {"200": 2, "400": 1},
        "rate_limited": 0,
        "faults": {},
    }
    assert own_client.post("/_sim/stats/reset").json() == {"requests": {}, "status_codes": {}, "rate_limited": 0, "faults": {}}
    assert own_client.get("/_sim/stats").json()["requests"] == {}
