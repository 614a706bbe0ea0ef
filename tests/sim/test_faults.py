"""Every fault kind is observable, reproducible, and transient ones give way to a retry."""

from __future__ import annotations

import http.client
import json
import urllib.error

import pytest

from etl.sim.faults import FaultConfig
from etl.sim.lexicon import Lexicons
from etl.sim.population import Population
from etl.sim.server import ThreadedServer, serve_in_thread

from .conftest import START, Client, active_users, user_where

PROFILE = "app.bsky.actor.getProfile"
PROFILES = "app.bsky.actor.getProfiles"
FEED = "app.bsky.feed.getAuthorFeed"


def _try(client: Client, method: str, params: dict, timeout: float = 5) -> str:
    """What a request met: 'ok', an HTTP status, 'reset', 'timeout' or 'bad-json'."""
    try:
        answer = client.xrpc(method, params, timeout=timeout)
    except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead):
        return "reset"
    except TimeoutError:
        return "timeout"
    except urllib.error.URLError as error:
        return "timeout" if isinstance(error.reason, TimeoutError) else "reset"
    if answer.status != 200:
        return str(answer.status)
    try:
        json.loads(answer.body)
    except ValueError:
        assert int(answer.headers["Content-Length"]) == len(answer.body)
        return "bad-json"
    return "ok"


@pytest.mark.parametrize(
    ("kind", "seen"),
    [("500", "500"), ("502", "502"), ("503", "503"), ("reset", "reset"), ("timeout", "timeout"), ("truncated", "bad-json")],
)
def test_a_transport_fault_strikes_the_first_attempts_and_the_retry_succeeds(
    sim: ThreadedServer, own_client: Client, kind: str, seen: str
) -> None:
    own_client.post("/_sim/faults", {"rates": {kind: 1.0}, "attempts": 2})
    params = {"actor": sim.population.did(1)}
    outcomes = [_try(own_client, PROFILE, params, timeout=0.5) for _ in range(3)]
    assert outcomes == [seen, seen, "ok"]
    assert own_client.get("/_sim/stats").json()["faults"] == {kind: 2}
    assert own_client.get("/_sim/users", {"limit": 2}).status == 200  # admin is never faulted


def test_error_pages_look_like_the_real_ones(sim: ThreadedServer, own_client: Client) -> None:
    params = {"actor": sim.population.did(1)}
    own_client.post("/_sim/faults", {"rates": {"502": 1.0}})
    html = own_client.xrpc(PROFILE, params)
    assert html.headers["Content-Type"].startswith("text/html") and b"502 Bad Gateway" in html.body
    own_client.post("/_sim/faults", {"rates": {"500": 1.0}})
    assert own_client.xrpc(PROFILE, params).json() == {"error": "InternalServerError", "message": "Internal Server Error"}


def test_faults_are_reproducible_from_the_seed_and_request_sequence() -> None:
    def run() -> list[str]:
        with serve_in_thread(users=200, seed=3, start=START, faults={"500": 0.3, "503": 0.2}) as server:
            client = Client(server.url)
            actors = [server.population.did(i) for i in active_users(server.population)[:40]]
            return [_try(client, PROFILE, {"actor": actor}) for actor in actors for _ in range(3)]

    first, second = run(), run()
    assert first == second
    assert {"500", "503", "ok"} <= set(first)
    # Three tries per request are always enough with the default attempts = 2.
    assert all("ok" in first[n : n + 3] for n in range(0, len(first), 3))


def test_short_pages_lose_nothing_though_some_are_empty(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    index = user_where(population, lambda i: 200 < len(population.timeline(i, 0).rows) < 1500)
    own_client.post("/_sim/faults", {"rates": {"short_pages": 1.0}})
    pages = own_client.feed_pages(population.did(index), limit=100)
    items = [item for page in pages for item in page["feed"]]
    assert len(items) == own_client.truth(population.did(index))["feed_items"]
    assert all(len(page["feed"]) < 100 for page in pages)
    assert any(not page["feed"] and "cursor" in page for page in pages)


def test_repeat_cursor_hands_back_the_cursor_it_was_given(sim: ThreadedServer, own_client: Client) -> None:
    did = sim.population.did(user_where(sim.population, lambda i: len(sim.population.timeline(i, 0).rows) > 30))
    own_client.post("/_sim/faults", {"rates": {"repeat_cursor": 1.0}})
    first = own_client.xrpc(FEED, {"actor": did, "limit": 10}).json()
    second = own_client.xrpc(FEED, {"actor": did, "limit": 10, "cursor": first["cursor"]}).json()
    assert second["cursor"] == first["cursor"]


def test_endless_feed_always_has_another_cursor(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    index = user_where(population, lambda i: 0 < len(population.timeline(i, 0).rows) < 30)
    own_client.post("/_sim/faults", {"rates": {"endless_feed": 1.0}})
    cursors, items = [], 0
    cursor = None
    for _ in range(8):
        params = {"actor": population.did(index), "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = own_client.xrpc(FEED, params).json()
        items += len(page["feed"])
        cursor = page["cursor"]
        cursors.append(cursor)
    assert len(set(cursors)) == len(cursors)
    assert items == len(population.timeline(index, 0).rows)


def test_dup_posts_repeats_the_last_item_of_the_previous_page(sim: ThreadedServer, own_client: Client) -> None:
    did = sim.population.did(user_where(sim.population, lambda i: len(sim.population.timeline(i, 0).rows) > 30))
    own_client.post("/_sim/faults", {"rates": {"dup_posts": 1.0}})
    first = own_client.xrpc(FEED, {"actor": did, "limit": 10}).json()
    second = own_client.xrpc(FEED, {"actor": did, "limit": 10, "cursor": first["cursor"]}).json()
    assert second["feed"][0] == first["feed"][-1] and len(second["feed"]) == 10


def test_hostile_strings_reach_the_wire_as_valid_json(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    own_client.post("/_sim/faults", {"rates": {"hostile": 1.0}})
    actors = [population.did(i) for i in active_users(population)[:25]]
    answer = own_client.xrpc(PROFILES, {"actors": actors})
    names = [p.get("displayName", "") for p in answer.json()["profiles"]]
    assert any(len(name) >= 10_000 for name in names)
    assert any("\x00" in name for name in names) and b"\\u0000" in answer.body
    assert any("\ud800" in name for name in names) and b"\\ud800" in answer.body
    assert any("DROP TABLE" in name for name in names)
    assert own_client.truth(actors[0])["displayName"] == names[0]
    texts = []
    for index in active_users(population)[:40]:
        for item in own_client.xrpc(FEED, {"actor": population.did(index), "limit": 5}).json()["feed"]:
            texts.append(item["post"]["record"]["text"])
    assert any(len(text) >= 1_000_000 for text in texts) and any("\x00" in text for text in texts)


def test_bad_counts_break_the_lexicon_but_not_the_truth(sim: ThreadedServer, own_client: Client, lexicons: Lexicons) -> None:
    population = sim.population
    own_client.post("/_sim/faults", {"rates": {"bad_counts": 1.0}})
    actors = [population.did(i) for i in active_users(population)[:25]]
    profiles = own_client.xrpc(PROFILES, {"actors": actors}).json()["profiles"]
    values = [p.get("followersCount", "missing") for p in profiles]
    assert "missing" in values and any(isinstance(v, str) for v in values)
    assert any(isinstance(v, float) for v in values) and any(isinstance(v, int) and v < 0 for v in values)
    assert lexicons.errors(PROFILES, {"profiles": profiles})
    assert isinstance(own_client.truth(actors[0])["followersCount"], int)


def test_targets_fail_one_user_always_and_leave_others_alone(sim: ThreadedServer, own_client: Client) -> None:
    population: Population = sim.population
    victim, bystander = (population.did(i) for i in active_users(population)[1:3])
    own_client.post("/_sim/faults", {"targets": {victim: {"feed": "500"}}})
    assert [_try(own_client, FEED, {"actor": victim}) for _ in range(5)] == ["500"] * 5
    assert _try(own_client, FEED, {"actor": bystander}) == "ok"
    assert _try(own_client, PROFILE, {"actor": victim}) == "ok"


def test_a_target_can_become_deactivated_between_profiles_and_feed(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    index = active_users(population)[3]
    did = population.did(index)
    assert len(own_client.xrpc(PROFILES, {"actors": [did]}).json()["profiles"]) == 1
    own_client.post("/_sim/faults", {"targets": {did: {"status": "deactivated"}}})
    assert own_client.xrpc(FEED, {"actor": did}).json() == {"error": "InvalidRequest", "message": "Profile not found"}
    assert own_client.xrpc(PROFILE, {"actor": did}).json()["error"] == "AccountDeactivated"
    assert own_client.xrpc(PROFILES, {"actors": [did]}).json() == {"profiles": []}
    assert own_client.get("/_sim/users", {"offset": index, "limit": 1}).json()["users"][0]["status"] == "deactivated"
    assert own_client.truth(did)["status"] == "deactivated"


def test_a_targeted_profile_fault_sinks_every_batch_naming_the_user(sim: ThreadedServer, own_client: Client) -> None:
    population = sim.population
    actors = [population.did(i) for i in active_users(population)[:25]]
    own_client.post("/_sim/faults", {"targets": {actors[7]: {"profile": "503"}}})
    assert [_try(own_client, PROFILES, {"actors": actors}) for _ in range(4)] == ["503"] * 4
    assert _try(own_client, PROFILES, {"actors": actors[:7] + actors[8:]}) == "ok"
    handle = population.handle(active_users(population)[7], 0)
    assert _try(own_client, PROFILE, {"actor": handle}) == "503"


def test_the_fault_configuration_reads_back_and_rejects_nonsense(own_client: Client) -> None:
    config = {"rates": {"500": 0.25, "hostile": 0.5}, "attempts": 3, "targets": {"did:plc:x": {"feed": "endless_feed", "data": ["bad_counts"]}}}
    assert own_client.post("/_sim/faults", config).json() == {**config, "rates": {"500": 0.25, "hostile": 0.5}}
    assert own_client.get("/_sim/faults").json() == config
    for bad in ({"rates": {"404": 0.1}}, {"rates": {"500": 2}}, {"attempts": 0}, {"targets": {"did:plc:x": {"feed": "nope"}}}, {"x": 1}):
        assert own_client.post("/_sim/faults", bad).status == 400
    assert own_client.post("/_sim/faults", {}).json() == {"rates": {}, "attempts": 2, "targets": {}}


def test_command_line_fault_specs_parse() -> None:
    config = FaultConfig.from_specs(["500=0.1", "timeout=0.02"], attempts=3)
    assert config.rates == {"500": 0.1, "timeout": 0.02} and config.attempts == 3
    for bad in ("500", "500=lots", "teapot=0.1", "500=1.5"):
        with pytest.raises(ValueError):
            FaultConfig.from_specs([bad])
