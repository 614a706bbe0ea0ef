"""The world model: deterministic, realistic in shape, and changing day by day as documented."""

from __future__ import annotations

import statistics
import time

import pytest

from etl.sim import syntax
from etl.sim.population import (
    BACKDATED,
    FUTURE,
    MALFORMED,
    MICROS,
    NORMAL,
    OFFSET,
    REPLY,
    SELF_REPLY,
    Population,
    Post,
    Repost,
)

from .conftest import SEED, START, USERS, active_users

SAMPLE = range(0, USERS, 3)  # every third user: enough variety, a third of the cost


@pytest.fixture(scope="module")
def world() -> Population:
    return Population(USERS, SEED, START)


def test_same_seed_gives_the_same_world_and_another_seed_another(world: Population) -> None:
    twin = Population(USERS, SEED, START)
    other = Population(USERS, SEED + 1, START)
    for index in (1, 17, 500):
        assert twin.did(index) == world.did(index)
        assert twin.handle(index, 3) == world.handle(index, 3)
        assert [row[:3] for row in twin.timeline(index, 2).rows] == [row[:3] for row in world.timeline(index, 2).rows]
    assert [other.did(i) for i in range(50)] != [world.did(i) for i in range(50)]
    assert [other.handle(i, 0) for i in range(1, 50)] != [world.handle(i, 0) for i in range(1, 50)]


def test_a_million_users_cost_nothing_up_front() -> None:
    started = time.perf_counter()
    huge = Population(1_000_000, SEED, START)
    last = huge.user(999_999)
    assert huge.index_of_did(last.did) == 999_999
    assert huge.index_of_handle(huge.handle(999_999, 0), 0) == 999_999
    assert time.perf_counter() - started < 1.0


def test_dids_and_handles_are_valid_unique_and_resolve_back(world: Population) -> None:
    dids = [world.did(i) for i in range(USERS)]
    handles = [world.handle(i, 0) for i in range(USERS)]
    assert len(set(dids)) == USERS
    assert all(syntax.is_did(did) and len(did) == 32 for did in dids)
    real = [h for h in handles if h != "handle.invalid"]
    assert len(set(real)) == len(real)
    assert all(syntax.is_handle(h) and h == h.lower() for h in handles)
    assert any(not h.endswith(".bsky.social") and h != "handle.invalid" for h in handles)  # custom domains
    for index in range(USERS):
        assert world.index_of_did(dids[index]) == index
        if handles[index] != "handle.invalid":
            assert world.index_of_handle(handles[index].upper(), 0) == index
    assert world.handle(0, 0) == "bsky.app" and world.resolve("bsky.app", 5) == 0


def test_statuses_are_mostly_active_with_a_few_of_each_other_kind(world: Population) -> None:
    statuses = [world.status(i, 0) for i in range(USERS)]
    assert statuses.count("active") > 0.85 * USERS
    for status in ("deactivated", "takendown", "not_found"):
        assert 0 < statuses.count(status) < 0.06 * USERS
    invalid = [i for i in range(USERS) if world.handle(i, 0) == "handle.invalid"]
    assert invalid and all(statuses[i] == "active" for i in invalid)


def test_followers_are_heavy_tailed(world: Population) -> None:
    followers = sorted(world.profile(i, 0).followers for i in active_users(world))
    assert statistics.median(followers) < 300
    assert followers[-2] > 100_000  # bsky.app and the block's firehose account at least


def test_activity_is_heavy_tailed_with_a_backfill_buster_and_many_silent_users(world: Population) -> None:
    counts = {i: world.profile(i, 0).posts_count for i in active_users(world)}
    assert max(counts.values()) > 10_000
    assert statistics.median(counts.values()) < 100
    week_ago = world.now_us(0) - 7 * 86_400_000_000
    silent = [i for i in SAMPLE if i in counts and not world.timeline(i, 0).count_since(week_ago)]
    assert len(silent) > 0.4 * len([i for i in SAMPLE if i in counts])


@pytest.mark.parametrize("day", [0, 1, 6, 20])
def test_posts_count_equals_the_own_posts_the_feed_shows(world: Population, day: int) -> None:
    for index in SAMPLE:
        if world.status(index, day) != "active":
            continue
        timeline = world.timeline(index, day)
        own = [row[3] for row in timeline.rows if isinstance(row[3], Post)]
        assert world.profile(index, day).posts_count == len(own) == timeline.posts_count
        assert all(post.author == index for post in own)


def test_feed_rows_are_sorted_newest_first_by_the_documented_sort_time(world: Population) -> None:
    for index in SAMPLE[:100]:
        rows = world.timeline(index, 0).rows
        assert [row[:3] for row in rows] == sorted(row[:3] for row in rows)
        for sort_us, _, is_repost, entry in rows:
            if is_repost:
                assert sort_us == entry.t
            else:
                created = syntax.parse_datetime(world.created_at(entry))
                indexed = syntax.parse_datetime(world.indexed_at(entry))
                expected = indexed if created is None else min(created, indexed)
                assert abs(sort_us - int(expected.timestamp() * 1_000_000)) < 1000


def _all_posts(world: Population, indexes) -> list[Post]:
    return [row[3] for i in indexes for row in world.timeline(i, 0).rows if isinstance(row[3], Post)]


def test_created_at_is_normally_clean_but_sometimes_odd(world: Population) -> None:
    posts = _all_posts(world, SAMPLE)
    by_variant: dict[int, list[Post]] = {}
    for post in posts:
        by_variant.setdefault(post.variant, []).append(post)
    assert set(by_variant) == {NORMAL, MICROS, OFFSET, BACKDATED, FUTURE, MALFORMED}
    assert len(by_variant[NORMAL]) > 0.95 * len(posts)
    for post in posts:
        created, indexed = world.created_at(post), world.indexed_at(post)
        assert syntax.is_datetime(indexed) and indexed.endswith("Z")
        assert syntax.is_tid(world.rkey(post)) and syntax.is_at_uri(world.uri(post))
        if post.variant == MALFORMED:
            assert not syntax.is_datetime(created)
            continue
        assert syntax.is_datetime(created)
        if post.variant == NORMAL:
            assert len(created) == 24 and created.endswith("Z") and 0 < post.indexed_us - post.t < 10_000_000
        elif post.variant == OFFSET:
            assert created[-6] in "+-" and not created.endswith("Z")
        elif post.variant == BACKDATED:
            assert post.t - post.created_us > 59 * 86_400_000_000
        elif post.variant == FUTURE:
            assert created.startswith("2099-")


def test_some_posts_are_replies_and_some_feed_items_reposts(world: Population) -> None:
    rows = [row for i in SAMPLE for row in world.timeline(i, 0).rows]
    kinds = {row[3].kind for row in rows if isinstance(row[3], Post)}
    assert {SELF_REPLY, REPLY} <= kinds
    reposts = [row[3] for row in rows if isinstance(row[3], Repost)]
    assert any(r.target.author != r.by for r in reposts)
    self_reposts = [r for r in reposts if r.target.author == r.by]
    assert self_reposts
    # A self-repost shows the same post twice in the author's feed.
    repost = self_reposts[0]
    own_entries = [row[3] for row in world.timeline(repost.by, 0).rows]
    assert repost.target in own_entries and repost in own_entries
    for post in (row[3] for row in rows if isinstance(row[3], Post) and row[3].kind != 0):
        parent, root = world.reply_refs(post)
        assert parent.t < post.t and root.t <= parent.t
        if post.kind == SELF_REPLY:
            assert parent.author == root.author == post.author


def test_pinned_posts_are_the_authors_own(world: Population) -> None:
    pinned = [(i, world.pinned(i, 0)) for i in active_users(world)]
    pinned = [(i, post) for i, post in pinned if post is not None]
    assert len(pinned) > 20
    assert all(post.author == i and post.exists_at(world.now_us(0)) for i, post in pinned)


def test_engagement_never_decreases_grows_fast_then_saturates(world: Population) -> None:
    posts = [p for p in _all_posts(world, SAMPLE[:150]) if p.t > world.now_us(0) - 3 * 86_400_000_000]
    assert posts
    for post in posts:
        series = [world.engagement(post, day) for day in range(0, 40, 3)]
        for before, after in zip(series, series[1:], strict=False):
            assert all(a <= b for a, b in zip(before, after, strict=True))
        assert world.engagement(post, 60) == world.engagement(post, 61)  # saturated
    likes = sorted(world.engagement(p, 30)[0] for p in _all_posts(world, SAMPLE))
    assert statistics.median(likes) < 20 and likes[-1] > 500  # most small, a few viral


def test_the_same_day_always_gives_the_same_answer(world: Population) -> None:
    fresh = Population(USERS, SEED, START)

    def seen(population: Population, index: int) -> tuple:
        profile = population.profile(index, 4)
        pin = profile.pinned
        rows = [(row[:3], population.uri(row[3].target if row[2] else row[3])) for row in population.timeline(index, 4).rows]
        return profile.handle, profile.status, profile.followers, profile.posts_count, pin and population.uri(pin), rows

    for index in SAMPLE[:50]:
        assert seen(fresh, index) == seen(world, index)


def test_advancing_the_clock_adds_posts_deletes_a_few_and_moves_counts(world: Population) -> None:
    added = deleted = 0
    for index in active_users(world):
        before = {row[:3] for row in world.timeline(index, 0).rows if not row[2]}
        after = {row[:3] for row in world.timeline(index, 1).rows if not row[2]}
        added += len(after - before)
        deleted += len(before - after)
    assert added > 100
    assert 0 < deleted < added
    shrinking = [
        i for i in active_users(world, 1)
        if world.status(i, 0) == "active" and world.profile(i, 1).posts_count < world.profile(i, 0).posts_count
    ]
    assert shrinking  # a deletion and no new post that day: postsCount goes down
    changed = [i for i in active_users(world) if world.profile(i, 1).followers != world.profile(i, 0).followers]
    assert len(changed) > 0.3 * USERS


def test_a_handle_swap_happens_within_the_first_days_and_is_listed(world: Population) -> None:
    swaps = [(day, pair) for day in (1, 2, 3) for pair in world.swaps_on(day)]
    assert swaps
    day, (a, b) = swaps[0]
    assert world.handle(a, day - 1) == world.own_handle(a, day - 1)
    assert world.handle(a, day) == world.own_handle(b, day) and world.handle(b, day) == world.own_handle(a, day)
    assert world.index_of_handle(world.handle(a, day), day) == a
    assert world.index_of_handle(world.handle(a, day - 1), day) == b
    assert world.status(a, day) == world.status(b, day) == "active"


def test_handles_change_now_and_then_and_old_handles_stop_resolving(world: Population) -> None:
    changes = [(day, i) for day in range(1, 15) for i in world.handle_changes_on(day)]
    assert changes
    day, index = changes[0]
    old, new = world.handle(index, day - 1), world.handle(index, day)
    assert old != new and syntax.is_handle(new)
    assert world.index_of_handle(new, day) == index and world.index_of_handle(old, day) is None


def test_an_account_becomes_deactivated_on_a_later_day(world: Population) -> None:
    deactivated = [(day, i) for day in (1, 2, 3) for i in world.deactivations_on(day)]
    assert deactivated
    day, index = deactivated[0]
    assert world.status(index, day - 1) == "active" and world.status(index, day) == "deactivated"
    assert world.profile(index, day).posts_count is None and world.timeline(index, day).rows == []


def test_activity_scales_posting_volume_but_keeps_the_backfill_buster() -> None:
    light = Population(USERS, SEED, START, activity=0.2)
    full = Population(USERS, SEED, START)
    indexes = [i for i in range(USERS) if light.status(i, 0) == "active"]
    light_total = sum(light.posts_count(i, 0) for i in indexes if light.user(i).role != "firehose")
    full_total = sum(full.posts_count(i, 0) for i in indexes if full.user(i).role != "firehose")
    assert light_total < 0.4 * full_total
    assert max(light.posts_count(i, 0) for i in indexes) > 10_000
    with pytest.raises(ValueError):
        Population(USERS, SEED, START, activity=0)
