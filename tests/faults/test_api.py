"""API faults: two days of runs against a simulator that fails, stalls and lies, then reruns.

One world serves every API row: transient faults strike every kind of request at random (and
always clear by the third attempt), while each persistent fault is aimed at one user of its own.
Each row is a test that reads the shared outcome, so a failure names the fault that broke.
Day 0 exercises the first read (backfill); day 1 the later ones (window reads, getPosts refreshes).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from aiohttp import web

from etl.plan import Mode, UserContext, Window, choose_mode
from etl.shards import shard_of
from etl.sim.expect import truth
from etl.sim.faults import HOSTILE_TEXTS, Target
from etl.sqlfiles import queries
from etl.validate import parse_datetime
from tests.faults.conftest import (
    check_end_state,
    clean_names,
    end_state,
    log_lines,
    rerun_completes,
    run_once,
    sim_now,
    user_failures,
    world,
    written,
)

pytestmark = pytest.mark.slow
ETL = queries("etl")

BACKFILL = 300  # posts read the first time (the default is 10,000): keeps the matrix quick
TRANSIENT = {"500": 0.08, "502": 0.08, "timeout": 0.02, "reset": 0.04, "truncated": 0.04}
FEED_ANOMALIES = {"short_pages": 0.3, "dup_posts": 0.3}
# Persistent faults, one user each, and what the user's failure reason must say.
FEED_FAULTS = {
    "500": "HTTP 500",
    "502": "HTTP 502",
    "timeout": "timed out",
    "reset": "",
    "truncated": "unreadable JSON",
}


def deactivate_after_get_profiles(victim: str):
    """A middleware: once armed (hook.armed.append(True)), the first time getProfiles answers for
    `victim` the account is deactivated (before the run asks for its feed)."""
    done: list[bool] = []

    @web.middleware
    async def hook(request: web.Request, handler):
        response = await handler(request)
        if (
            hook.armed
            and not done
            and request.match_info.get("method") == "app.bsky.actor.getProfiles"
            and victim in request.query.getall("actors", [])
            and response.status == 200
        ):
            from etl.sim.server import STATE

            request.app[STATE].faults.config.targets[victim] = Target(status="deactivated")
            done.append(True)
        return response

    hook.armed = []
    return hook


def spoil_post_counts():
    """A middleware: in getAuthorFeed and getPosts answers, the first post of each DID in
    `hook.victims` gets a negative likeCount (the profile stays sane)."""
    import json

    @web.middleware
    async def hook(request: web.Request, handler):
        response = await handler(request)
        method = request.match_info.get("method")
        if not hook.victims or response.status != 200 or method not in ("app.bsky.feed.getAuthorFeed", "app.bsky.feed.getPosts"):
            return response
        try:
            body = json.loads(response.body)
        except ValueError:
            return response  # a truncated answer (another fault): left as it is
        views = [item["post"] for item in body.get("feed", []) if "reason" not in item] + body.get("posts", [])
        for did in hook.victims:
            own = [view for view in views if view["author"]["did"] == did]
            if own:
                own[0]["likeCount"] = -1
        return web.json_response(body)

    hook.victims = set()
    return hook


class Casting:
    """Which user gets which persistent fault, chosen by the shape of their feed."""

    def __init__(self, sim_url: str, registered: dict[str, str]):
        truths = {did: truth(sim_url, did) for did in sorted(registered)}
        active = [did for did, t in truths.items() if t["status"] == "active"]
        # The failed getProfiles call takes its whole chunk down: its target gets shard 0 to
        # itself, every other target is in shard 1.
        self.profile_500 = next(did for did in active if shard_of(did, 2) == 0 and truths[did]["feed_items"] <= 30)
        active = [did for did in active if shard_of(did, 2) == 1]
        small = [did for did in active if 1 <= truths[did]["feed_items"] <= 30]
        big = [did for did in active if 150 <= truths[did]["feed_items"] <= 3000]
        self.truths = truths
        self.feed = {kind: small.pop() for kind in FEED_FAULTS}
        self.endless = small.pop()
        self.hostile_small = small.pop()
        self.bad_counts = small.pop()
        self.post_counts = small.pop()
        self.deactivated = small.pop()
        self.repeat_cursor = big.pop()
        self.hostile_big = big.pop()

    def targets(self) -> dict:
        targets = {did: {"feed": kind} for kind, did in self.feed.items()}
        targets[self.endless] = {"feed": "endless_feed"}
        targets[self.repeat_cursor] = {"feed": "repeat_cursor"}
        targets[self.hostile_small] = {"data": ["hostile"]}
        targets[self.hostile_big] = {"data": ["hostile"]}
        targets[self.bad_counts] = {"data": ["bad_counts"]}
        targets[self.profile_500] = {"profile": "500"}
        return targets


@pytest.fixture(scope="module")
def day0(module_db, base, tmp_path_factory):
    """Day 0 under every API fault, then its rerun with the faults gone; then day 1 likewise."""
    tmp = tmp_path_factory.mktemp("api")
    # The victim of the mid-run deactivation is chosen before the simulator starts, from a
    # throwaway world with the same seed.
    from etl.sim.expect import sim_users
    from tests.faults.conftest import SEED, USERS, serve

    with serve(users=USERS, seed=SEED) as probe:
        casting = Casting(probe.url, {u["did"]: u["handle"] for u in sim_users(probe.url)})
    deactivate = deactivate_after_get_profiles(casting.deactivated)
    spoil = spoil_post_counts()
    with world(
        module_db,
        base,
        tmp,
        "api",
        middlewares=(deactivate, spoil),
        backfill_max_posts=BACKFILL,
        max_pages=40,
        # Transient faults strike at most 2 attempts: the third gets through. A persistent
        # timeout then costs 3 x 1 s.
        max_attempts=3,
        request_timeout=1.0,
    ) as w:
        w.sim.set_faults({"rates": {**TRANSIENT, **FEED_ANOMALIES, "hostile": 0.2}, "attempts": 2, "targets": casting.targets()})
        deactivate.armed.append(True)
        spoil.victims.add(casting.post_counts)
        report, as_of = run_once(w.settings, w.sim)
        spoil.victims.clear()
        got = written(w.dsn, as_of.date())
        expect = w.expectation()
        expect.backfill_max_posts = BACKFILL
        expect.after_run(as_of, got)
        clean_names(expect)
        state = end_state(w.dsn, expect, as_of.date())
        failures = user_failures(w.log_file)
        stats = w.sim.call(w.sim.state.stats.to_json)
        faults = w.sim.state.faults
        megabyte_texts = [  # posts of the hostile user served with a 1 MB text
            post["uri"]
            for post in truth(w.sim.url, casting.hostile_small)["posts"]
            if faults.pick("hostile-text", post["uri"]) % len(HOSTILE_TEXTS) == 0
        ]
        yield {
            "spoil": spoil,
            "stats": stats,
            "megabyte_texts": megabyte_texts,
            "world": w,
            "casting": casting,
            "report": report,
            "as_of": as_of,
            "state": state,
            "failures": failures,
            "expect": expect,
        }


def test_day0_end_state(day0):
    failed = set(day0["failures"])
    check_end_state(day0["state"], day0["expect"], failed=failed)
    assert day0["state"].users_failed == len(failed)
    assert day0["report"].exit_code == 1


def test_every_fault_of_the_day_struck(day0):
    struck = day0["stats"]["faults"]
    for kind in [*TRANSIENT, *FEED_ANOMALIES, "endless_feed", "repeat_cursor"]:
        assert struck.get(kind, 0) > 0, (kind, struck)


@pytest.mark.parametrize("kind", list(FEED_FAULTS))
def test_persistent_feed_fault_fails_that_user_with_the_reason(day0, kind):
    did = day0["casting"].feed[kind]
    reason = day0["failures"].get(did)
    assert reason is not None and reason.startswith("getAuthorFeed:"), reason
    assert FEED_FAULTS[kind] in reason
    assert did not in day0["state"].written


def test_transient_faults_are_retried_and_every_other_user_is_written(day0):
    report = day0["report"]
    assert report.api.retries > 0
    c = day0["casting"]
    expected_failures = set(c.feed.values()) | {c.repeat_cursor, c.bad_counts, c.post_counts, c.profile_500}
    other = set(day0["failures"]) - expected_failures
    # Only the users sharing the failed getProfiles call with the targeted one fail besides.
    assert all(day0["failures"][did].startswith("getProfiles:") for did in other), {d: day0["failures"][d] for d in other}
    assert len(other) < 25


def test_endless_feed_stops_at_the_page_cap_and_the_user_is_written(day0):
    did = day0["casting"].endless
    assert did in day0["state"].written
    messages = [e["message"] for e in log_lines(day0["world"].log_file)]
    assert f"{did}: author feed incomplete after 40 pages (page_cap)" in messages


def test_repeated_cursor_ends_the_read_without_looping(day0):
    did = day0["casting"].repeat_cursor
    assert did not in day0["state"].written
    assert "cursor" in day0["failures"][did]


def test_hostile_strings_are_stored_cleaned_or_verbatim(day0):
    did = day0["casting"].hostile_small
    assert did in day0["state"].written
    with psycopg.connect(day0["world"].dsn) as conn:
        name = conn.execute('SELECT "displayName" FROM users WHERE did = %s', (did,)).fetchone()[0]
    assert name is None or ("\x00" not in name and len(name) <= 255)


def test_posts_with_a_1_mb_text_are_read_and_stored(day0):
    did = day0["casting"].hostile_small
    assert day0["megabyte_texts"]
    with psycopg.connect(day0["world"].dsn) as conn:
        stored = {r[0] for r in conn.execute("SELECT uri FROM posts WHERE did = %s", (did,))}
    assert set(day0["megabyte_texts"]) <= stored


def test_a_page_over_the_size_cap_is_read_again_in_smaller_pages_and_the_user_is_written(day0):
    did = day0["casting"].hostile_big
    assert did not in day0["failures"] and did in day0["state"].written
    shrunk = [e["message"] for e in log_lines(day0["world"].log_file) if "too large; asking again" in e["message"]]
    assert any(did in message for message in shrunk), shrunk[:3]


def test_bad_counts_fail_the_user_rather_than_write_invented_numbers(day0):
    did = day0["casting"].bad_counts
    assert did not in day0["state"].written
    assert "count" in day0["failures"][did].lower()


def test_a_bad_count_on_one_post_fails_its_user(day0):
    reason = day0["failures"][day0["casting"].post_counts]
    assert reason.startswith("getAuthorFeed: unusable counts on 1 posts (e.g. likeCount of at://"), reason
    assert day0["casting"].post_counts not in day0["state"].written


def test_account_deactivated_between_get_profiles_and_the_feed_is_recorded_without_a_snapshot(day0):
    did = day0["casting"].deactivated
    assert did not in day0["state"].written
    with psycopg.connect(day0["world"].dsn) as conn:
        status = conn.execute("SELECT account_status FROM users WHERE did = %s", (did,)).fetchone()[0]
    assert status == "deactivated"
    assert did not in day0["failures"]


@pytest.fixture(scope="module")
def rerun0(day0):
    w = day0["world"]
    return rerun_completes(w.settings, w.sim, w.dsn, day0["expect"], day0["as_of"])


def test_the_rerun_completes_the_day(day0, rerun0):
    assert rerun0.written > day0["state"].written


def test_odd_created_at_values_are_stored_as_the_rules_say(day0, rerun0):
    """Malformed createdAt: indexedAt; far in the future: indexedAt; an offset: the same instant
    in UTC. (The end state compares every stored post with these rules; this row checks that
    each kind was among them.)"""
    kinds = {"malformed": 0, "future": 0, "offset": 0}
    expect = day0["expect"]
    for did in rerun0.written:
        for post in truth(day0["world"].sim.url, did)["posts"]:
            created, indexed = parse_datetime(post["createdAt"]), parse_datetime(post["indexedAt"])
            stored = expect.users[did].posts.get(post["uri"])
            if stored is None:
                continue  # older than the backfill cap
            if created is None:
                kinds["malformed"] += 1
                assert stored[0] == indexed
            elif created - indexed > timedelta(minutes=10):
                kinds["future"] += 1
                assert stored[0] == indexed
            elif not post["createdAt"].endswith("Z"):
                kinds["offset"] += 1
                assert stored[0] == created
    assert all(kinds.values()), kinds


# --- day 1: window reads and getPosts refreshes under the same faults -------------------------


def modes_for(w, as_of) -> dict[str, Mode]:
    """How the run will read each active user today (etl.plan, from the database and the truth)."""
    window = Window(as_of, w.settings.post_window_days)
    with psycopg.connect(w.dsn) as conn:
        contexts = conn.execute(ETL.batch_context, {"dids": list(w.registered), "window_start": window.start}).fetchall()
    modes = {}
    for ctx in contexts:
        now = truth(w.sim.url, ctx[0])
        if now["status"] == "active":
            modes[ctx[0]] = choose_mode(UserContext(*ctx[:5], tuple(ctx[5])), now["postsCount"], as_of.date(), w.settings.full_read_days)
    return modes


@pytest.fixture(scope="module")
def day1(day0, rerun0):
    w = day0["world"]
    w.sim.advance(1)
    as_of = sim_now(w.sim)
    modes = modes_for(w, as_of)
    refresh = sorted(did for did, mode in modes.items() if mode is Mode.REFRESH)
    window = sorted(did for did, mode in modes.items() if mode is Mode.WINDOW)
    # The failed getPosts call takes every user with a post in it down: the bad-count victim is
    # in the other shard.
    spoiled = next(did for did in refresh[1:-1] if shard_of(did, 2) != shard_of(refresh[0], 2))
    cast = {"posts_503": refresh[0], "feed_500": window[0], "bad_counts": refresh[-1], "post_counts": spoiled}
    targets = {cast["posts_503"]: {"posts": "503"}, cast["feed_500"]: {"feed": "500"}, cast["bad_counts"]: {"data": ["bad_counts"]}}
    w.sim.set_faults({"rates": {**TRANSIENT, **FEED_ANOMALIES}, "attempts": 2, "targets": targets})
    mark = len(log_lines(w.log_file))
    day0["spoil"].victims.add(cast["post_counts"])
    report, _ = run_once(w.settings, w.sim, as_of=as_of)
    day0["spoil"].victims.clear()
    got = written(w.dsn, as_of.date())
    expect = day0["expect"]
    expect.after_run(as_of, got)
    clean_names(expect)
    state = end_state(w.dsn, expect, as_of.date(), [day0["as_of"].date(), as_of.date()])
    failures = user_failures(w.log_file, skip=mark)
    return {
        "world": w,
        "cast": cast,
        "modes": modes,
        "report": report,
        "as_of": as_of,
        "state": state,
        "failures": failures,
        "expect": expect,
    }


def test_day1_reads_by_window_and_refresh(day1):
    modes = set(day1["modes"].values())
    assert {Mode.WINDOW, Mode.REFRESH} <= modes
    assert day1["report"].api.requests.get("app.bsky.feed.getPosts", 0) > 0


def test_day1_end_state(day1):
    failed = set(day1["failures"])
    check_end_state(day1["state"], day1["expect"], failed=failed)
    assert day1["state"].users_failed == len(failed)


def test_a_failed_get_posts_call_fails_the_users_it_carried(day1):
    cast, failures = day1["cast"], day1["failures"]
    assert failures[cast["posts_503"]].startswith("getPosts:")
    assert "HTTP 503" in failures[cast["posts_503"]]
    assert failures[cast["feed_500"]].startswith("getAuthorFeed:")
    assert "Count" in failures[cast["bad_counts"]]
    assert failures[cast["post_counts"]].startswith("getPosts: unusable counts on 1 posts"), failures[cast["post_counts"]]
    others = set(failures) - set(cast.values())
    assert all(failures[did].startswith("getPosts:") for did in others)


def test_day1_rerun_completes(day1):
    w = day1["world"]
    rerun = rerun_completes(w.settings, w.sim, w.dsn, day1["expect"], day1["as_of"])
    assert rerun.written > day1["state"].written
