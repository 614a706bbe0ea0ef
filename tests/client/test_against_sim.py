"""The client against the simulated AppView: the fewest requests the simulator's truth allows."""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from datetime import datetime, timedelta

import pytest

from etl.appview import AppView
from etl.config import load_settings
from etl.ratelimit import RateLimiter
from etl.sim.expect import fetch_json, sim_users
from etl.sim.process import SimProcess
from etl.validate import post_time

USERS = 1000


def fewest_pages(items: int, items_since: int, page: int = 100) -> int:
    """Pages a reader needs: down to the first item older than `since`, or to the end."""
    if items > items_since:
        return math.ceil((items_since + 1) / page)
    return max(1, math.ceil(items / page))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Profiles and 7-day windows of 1,000 simulated users, read once; counts and truths kept."""
    # The simulator in its own process: the client and the server each get a core.
    with SimProcess(users=USERS, seed=11) as sim:
        now = datetime.fromisoformat(fetch_json(sim.url + "/_sim/clock")["now"].replace("Z", "+00:00"))
        since = now - timedelta(days=7)
        dids = [u["did"] for u in sim_users(sim.url)]
        settings = load_settings(environ={}, cwd=tmp_path_factory.mktemp("c")).replace(
            bluesky_base_url=sim.url, rate_limit=0, concurrency=8
        )
        limiter = RateLimiter(0, tmp_path_factory.mktemp("rl") / "budget.bin")

        async def read() -> tuple:
            async with AppView(settings, limiter=limiter) as api:
                profiles = await api.get_profiles(dids)
                after_profiles = dict(api.counters.requests)
                feeds = dict(
                    zip(
                        profiles.profiles,
                        await asyncio.gather(*(api.author_feed(did, since) for did in profiles.profiles)),
                        strict=True,
                    )
                )
                return profiles, after_profiles, feeds, dict(api.counters.requests)

        profiles, after_profiles, feeds, requests = asyncio.run(read())
        stamp = urllib.parse.quote(since.isoformat().replace("+00:00", "Z"))
        truths = {did: fetch_json(f"{sim.url}/_sim/truth?did={did}&since={stamp}") for did in feeds}
        statuses = {u["did"]: u["status"] for u in sim_users(sim.url)}
        limiter.close()
    return {
        "dids": dids,
        "profiles": profiles,
        "after_profiles": after_profiles,
        "feeds": feeds,
        "requests": requests,
        "truths": truths,
        "since": since,
        "statuses": statuses,
    }


def test_profiles_take_exactly_ceil_users_over_25_calls(measured):
    assert measured["after_profiles"] == {"app.bsky.actor.getProfiles": math.ceil(USERS / 25)}


def test_omitted_accounts_are_exactly_the_inactive_ones(measured):
    inactive = [did for did in measured["dids"] if measured["statuses"][did] != "active"]
    assert measured["profiles"].omitted == inactive
    assert len(measured["profiles"].profiles) == USERS - len(inactive)


def test_windows_take_the_fewest_feed_pages_the_truth_allows(measured):
    truths = measured["truths"]
    fewest = sum(fewest_pages(t["feed_items"], t["feed_items_since"]) for t in truths.values())
    assert measured["requests"]["app.bsky.feed.getAuthorFeed"] == fewest
    assert sum(result.pages for result in measured["feeds"].values()) == fewest
    assert all(result.complete for result in measured["feeds"].values())


def test_every_window_post_of_the_truth_was_read_with_its_counts(measured):
    since = measured["since"]
    for did, result in measured["feeds"].items():
        read = {p.uri: (p.likes, p.replies, p.quotes, p.reposts) for p in result.posts}
        for post in measured["truths"][did]["posts"]:
            if post_time(post["createdAt"], post["indexedAt"]) >= since:
                counts = (post["likeCount"], post["replyCount"], post["quoteCount"], post["repostCount"])
                assert read.get(post["uri"]) == counts, (did, post["uri"])
