"""The per-IP fixed-window rate limit: real headers, 429 with Retry-After, admin exempt."""

from __future__ import annotations

import json
import time

from etl.sim.faults import RateLimiter
from etl.sim.lexicon import xrpc_error_errors
from etl.sim.server import ThreadedServer, serve_in_thread

from .conftest import START, Client


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_fixed_window_opens_with_the_first_request_and_refuses_past_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 300, clock)
    answers = [limiter.check("127.0.0.1") for _ in range(3)]
    assert [ok for ok, _ in answers] == [True, True, True]
    assert [h["RateLimit-Remaining"] for _, h in answers] == ["2", "1", "0"]
    assert answers[0][1]["RateLimit-Reset"] == "1300" and answers[0][1]["RateLimit-Policy"] == "3;w=300"
    clock.now += 100
    ok, headers = limiter.check("127.0.0.1")
    assert not ok and headers["Retry-After"] == "200" and headers["RateLimit-Remaining"] == "0"
    assert limiter.check("10.0.0.2")[0]  # another IP has its own budget
    clock.now = 1_300.0
    ok, headers = limiter.check("127.0.0.1")
    assert ok and headers["RateLimit-Remaining"] == "2" and headers["RateLimit-Reset"] == "1600"


def test_every_xrpc_answer_carries_the_headers_and_the_excess_gets_429(sim: ThreadedServer, own_client: Client) -> None:
    assert own_client.post("/_sim/rate-limit", {"limit": 4, "window": 30}).json() == {"limit": 4, "window": 30.0}
    did = sim.population.did(1)
    started = time.time()
    answers = [own_client.xrpc("app.bsky.actor.getProfile", {"actor": did}) for _ in range(4)]
    answers.append(own_client.xrpc("app.bsky.feed.getAuthorFeed", {"actor": did, "limit": 0}))  # 400s count too
    assert [a.status for a in answers] == [200, 200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    for answer in answers:
        assert answer.headers["RateLimit-Limit"] == "4" and answer.headers["RateLimit-Policy"] == "4;w=30"
        assert started + 29 <= int(answer.headers["RateLimit-Reset"]) <= time.time() + 31
    refused = answers[-1]
    assert json.loads(refused.body) == {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
    assert xrpc_error_errors(json.loads(refused.body)) == []
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    # Admin endpoints are never limited and carry no rate-limit headers.
    for _ in range(10):
        admin = own_client.get("/_sim/users", {"limit": 1})
        assert admin.status == 200 and "RateLimit-Limit" not in admin.headers
    stats = own_client.get("/_sim/stats").json()
    assert stats["rate_limited"] == 1 and stats["status_codes"]["429"] == 1
    own_client.post("/_sim/rate-limit", {"limit": None})
    assert own_client.xrpc("app.bsky.actor.getProfile", {"actor": did}).status == 200
    assert "RateLimit-Limit" not in own_client.xrpc("app.bsky.actor.getProfile", {"actor": did}).headers
    assert own_client.get("/_sim/rate-limit").json()["limit"] is None


def test_the_budget_comes_back_when_the_window_ends() -> None:
    with serve_in_thread(users=50, seed=1, start=START, rate_limit=2, rate_window=1.0) as server:
        client = Client(server.url)
        did = server.population.did(1)
        statuses = [client.xrpc("app.bsky.actor.getProfile", {"actor": did}).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        time.sleep(1.1)
        assert client.xrpc("app.bsky.actor.getProfile", {"actor": did}).status == 200


def test_rate_limit_configuration_is_validated(own_client: Client) -> None:
    assert own_client.post("/_sim/rate-limit", {"limit": -1}).status == 400
    assert own_client.post("/_sim/rate-limit", {"limit": 5, "window": 0}).status == 400
    assert own_client.post("/_sim/rate-limit", {"burst": 5}).status == 400
