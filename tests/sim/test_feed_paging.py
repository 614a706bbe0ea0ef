"""Reading an author feed page by page gives exactly what the truth endpoint promises."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from etl.sim.population import Population

from .conftest import Client, user_where

FEED = "app.bsky.feed.getAuthorFeed"


def _items(pages: list[dict]) -> list[dict]:
    return [item for page in pages for item in page["feed"]]


def _key(item: dict) -> tuple:
    reason = item.get("reason", {})
    return item["post"]["uri"], reason.get("uri")


@pytest.mark.parametrize("limit", [100, 37])
def test_all_pages_together_hold_exactly_feed_items_without_repeats(
    client: Client, population: Population, limit: int
) -> None:
    index = user_where(population, lambda i: 300 < len(population.timeline(i, 0).rows) < 3000)
    did = population.did(index)
    truth = client.truth(did)
    pages = client.feed_pages(did, limit=limit)
    items = _items(pages)
    assert len(items) == truth["feed_items"]
    assert len({_key(item) for item in items}) == len(items)
    assert len(pages) == math.ceil(truth["feed_items"] / limit)
    assert all(len(page["feed"]) == limit for page in pages[:-1]) and "cursor" not in pages[-1]
    own = [item["post"]["uri"] for item in items if "reason" not in item]
    assert own == [post["uri"] for post in truth["posts"]]
    assert len(own) == truth["postsCount"]


def test_since_counts_the_items_a_client_must_read(client: Client, population: Population) -> None:
    index = user_where(population, lambda i: len(population.timeline(i, 0).rows) > 250)
    did = population.did(index)
    now = datetime.fromisoformat(client.get("/_sim/clock").json()["now"].replace("Z", "+00:00"))
    since = now - timedelta(days=30)
    truth = client.truth(did, since=since.isoformat())
    rows = population.timeline(index, 0).rows
    assert truth["feed_items_since"] == sum(1 for row in rows if row[0] >= since.timestamp() * 1_000_000)
    # Reading newest first, the items since then are exactly the first feed_items_since ones.
    items = _items(client.feed_pages(did))
    sort_times = [row[0] for row in reversed(rows)]
    assert len(items) == len(sort_times)
    since_us = int(since.astimezone(UTC).timestamp() * 1_000_000)
    assert sum(1 for t in sort_times if t >= since_us) == truth["feed_items_since"]
    assert sort_times[: truth["feed_items_since"]] == [t for t in sort_times if t >= since_us]
    assert client.truth(did)["feed_items_since"] == truth["feed_items"]


def test_pins_come_first_on_the_first_page_only(client: Client, population: Population) -> None:
    index = user_where(population, lambda i: population.pinned(i, 0) is not None and len(population.timeline(i, 0).rows) > 30)
    did = population.did(index)
    pages = client.feed_pages(did, limit=10, includePins="true")
    pins = [(n, item) for n, page in enumerate(pages) for item in page["feed"] if item.get("reason", {}).get("$type", "").endswith("reasonPin")]
    assert len(pins) == 1 and pins[0][0] == 0 and pages[0]["feed"][0] is pins[0][1]
    assert pins[0][1]["post"]["uri"] == population.uri(population.pinned(index, 0))
    assert len(pages[0]["feed"]) == 11  # the pin comes on top of the page's limit
    assert len(_items(pages)) == client.truth(did)["feed_items"] + 1
    assert client.feed_pages(did, limit=10)[0]["feed"][0].get("reason", {}).get("$type", "") != "app.bsky.feed.defs#reasonPin"


def test_cursors_are_opaque_stable_and_only_present_while_items_remain(client: Client, population: Population) -> None:
    index = user_where(population, lambda i: 20 < len(population.timeline(i, 0).rows) < 60)
    did = population.did(index)
    first = client.xrpc(FEED, {"actor": did, "limit": 10}).json()
    again = client.xrpc(FEED, {"actor": did, "limit": 10}).json()
    assert first == again
    cursor = first["cursor"]
    assert did not in cursor and not cursor.isdigit() and all(c.isalnum() or c in "-_" for c in cursor)
    second = client.xrpc(FEED, {"actor": did, "limit": 10, "cursor": cursor}).json()
    assert second == client.xrpc(FEED, {"actor": did, "limit": 10, "cursor": cursor}).json()
    assert second["feed"][0] != first["feed"][0]
    rest = client.xrpc(FEED, {"actor": did, "limit": 100, "cursor": cursor}).json()
    assert "cursor" not in rest and len(rest["feed"]) == len(population.timeline(index, 0).rows) - 10


def test_a_user_with_no_posts_gets_an_empty_feed_without_cursor(client: Client, population: Population) -> None:
    index = user_where(population, lambda i: not population.timeline(i, 0).rows)
    assert client.xrpc(FEED, {"actor": population.did(index)}).json() == {"feed": []}


def test_the_default_limit_is_fifty(client: Client, population: Population) -> None:
    index = user_where(population, lambda i: len(population.timeline(i, 0).rows) > 60)
    assert len(client.xrpc(FEED, {"actor": population.did(index)}).json()["feed"]) == 50
