"""Fixtures for the simulated AppView's tests: servers in a background thread and a tiny client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from email.message import Message
from typing import Any
from urllib.parse import urlencode

import pytest

from etl.sim.lexicon import Lexicons, default_lexicons
from etl.sim.population import Population
from etl.sim.server import ThreadedServer, serve_in_thread

SEED = 7
START = date(2026, 1, 1)
USERS = 1000
# No proxy, ever: the simulator is on loopback and a proxy from the environment would eat it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    """One HTTP answer."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class Client:
    """A synchronous HTTP client for one simulator (repeated parameters as lists)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, params: Any = (), body: Any = None, timeout: float = 10) -> Answer:
        """Send one request; HTTP errors come back as answers, transport errors raise."""
        query = urlencode(params, doseq=True) if params else ""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path + (f"?{query}" if query else ""), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.headers, error.read())

    def get(self, path: str, params: Any = (), timeout: float = 10) -> Answer:
        """GET path?params."""
        return self.request("GET", path, params, timeout=timeout)

    def post(self, path: str, body: Any = None, params: Any = ()) -> Answer:
        """POST a JSON body."""
        return self.request("POST", path, params, body=body if body is not None else {})

    def xrpc(self, method: str, params: Any = (), timeout: float = 10) -> Answer:
        """GET /xrpc/<method>."""
        return self.get(f"/xrpc/{method}", params, timeout=timeout)

    def users(self) -> list[dict]:
        """Every user of the world, through the paged admin listing."""
        users: list[dict] = []
        offset: int | None = 0
        while offset is not None:
            page = self.get("/_sim/users", {"offset": offset, "limit": 10_000}).json()
            users += page["users"]
            offset = page.get("next_offset")
        return users

    def truth(self, did: str, **params: Any) -> dict:
        """GET /_sim/truth."""
        return self.get("/_sim/truth", {"did": did, **params}).json()

    def feed_pages(self, actor: str, limit: int = 100, **params: Any) -> list[dict]:
        """Every page of an author feed, following cursors (bounded, to fail instead of hanging)."""
        pages = []
        cursor = None
        for _ in range(1000):
            query = {"actor": actor, "limit": limit, **params}
            if cursor is not None:
                query["cursor"] = cursor
            answer = self.xrpc("app.bsky.feed.getAuthorFeed", query)
            assert answer.status == 200, answer.body[:300]
            page = answer.json()
            pages.append(page)
            cursor = page.get("cursor")
            if cursor is None:
                return pages
        raise AssertionError("the feed did not end within 1000 pages")


@pytest.fixture(scope="session")
def lexicons() -> Lexicons:
    """The atproto lexicons as JSON Schema."""
    return default_lexicons()


@pytest.fixture(scope="session")
def population() -> Population:
    """The world the shared server serves (read-only tests)."""
    return Population(USERS, SEED, START)


@pytest.fixture(scope="module")
def shared_sim(population: Population) -> Iterator[ThreadedServer]:
    """A simulator shared by tests that only read (never advance, fault or rate-limit it)."""
    with serve_in_thread(population) as server:
        yield server


@pytest.fixture
def client(shared_sim: ThreadedServer) -> Client:
    """A client of the shared, read-only simulator."""
    return Client(shared_sim.url)


@pytest.fixture
def sim() -> Iterator[ThreadedServer]:
    """A simulator of its own for a test that changes it (clock, faults, rate limit)."""
    with serve_in_thread(users=USERS, seed=SEED, start=START) as server:
        yield server


@pytest.fixture
def own_client(sim: ThreadedServer) -> Client:
    """A client of the test's own simulator."""
    return Client(sim.url)


def active_users(population: Population, day: int = 0) -> list[int]:
    """Indexes of the users active on `day`."""
    return [i for i in range(population.size) if population.status(i, day) == "active"]


def user_where(population: Population, predicate, day: int = 0) -> int:
    """The first active user for whom predicate(index) holds."""
    for index in active_users(population, day):
        if predicate(index):
            return index
    raise AssertionError("no such user in the test population")
