"""What the database must hold after runs against the simulator, derived from its truth.

The simulator's `/_sim/truth` says what the AppView serves now. DESIGN section 2 says what the
run keeps of it: the first run backfills a user's history (up to backfill_max_posts, newest
first); later runs give posts inside the window fresh counts and delete the window's vanished
posts, while older posts keep the counts they had when last read. `Expectation.after_run`
applies exactly those rules day after day, with the run's read strategy (etl.plan: the window
is read when postsCount changed, on a periodic slot, or when a refreshed post vanished), and
`check` compares the database with the result: every snapshot column, every stored post, every
user row. A post the strategy cannot see yet (it came on the day an older post was deleted, so
postsCount did not move) is not demanded; `lagging()` lists such posts.

Used by the end-to-end tests and by `etl demo`, which prints the verdict.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg

from etl.plan import full_read_due
from etl.sqlfiles import OPS
from etl.validate import INVALID_HANDLE, post_time

# Truth lookups in flight: the admin API is cheap, this only hides the round trips.
FETCH_THREADS = 8


def fetch_json(url: str) -> dict:
    """GET a JSON document from the simulator's admin API."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def truth(sim_url: str, did: str) -> dict:
    """The simulator's truth for one account, as served now."""
    return fetch_json(f"{sim_url}/_sim/truth?did={urllib.parse.quote(did, safe='')}")


def sim_users(sim_url: str, limit: int | None = None) -> list[dict]:
    """The simulated population's accounts ({did, handle, status}), in order."""
    users: list[dict] = []
    offset: int | None = 0
    while offset is not None and (limit is None or len(users) < limit):
        page = fetch_json(f"{sim_url}/_sim/users?offset={offset}&limit=10000")
        users.extend(page["users"])
        offset = page.get("next_offset")
    return users[:limit] if limit is not None else users


@dataclass
class UserExpectation:
    """One registered user's expected rows."""

    did: str
    handle: str
    status: str | None = None
    display_name: str | None = None
    avatar: str | None = None
    backfilled: bool = False
    posts_count: int | None = None  # postsCount when last written (the run's etl_user_state)
    window_read_on: date | None = None
    lagging: list[str] = field(default_factory=list)
    posts: dict[str, tuple] = field(default_factory=dict)  # uri -> (createdAt, likes, replies, quotes, reposts)
    snapshots: dict[date, tuple] = field(default_factory=dict)


@dataclass
class Verdict:
    """The outcome of `Expectation.check`."""

    users: int = 0
    snapshots: int = 0
    posts: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def written(conn: psycopg.Connection, day: date) -> set[str]:
    """DIDs with a snapshot for the day (the users a run wrote)."""
    return {row[0] for row in conn.execute(OPS.snapshot_dids, {"date": day})}


class Expectation:
    """Follows the simulator's truth across runs and says what the database must hold."""

    def __init__(
        self,
        sim_url: str,
        registered: dict[str, str],
        *,
        window_days: int = 7,
        backfill_max_posts: int = 10_000,
        full_read_days: int = 7,
    ):
        self.sim_url = sim_url
        self.window_days = window_days
        self.backfill_max_posts = backfill_max_posts
        self.full_read_days = full_read_days
        self.users = {did: UserExpectation(did, handle) for did, handle in registered.items()}

    def _truths(self, dids: Iterable[str]) -> dict[str, dict]:
        dids = list(dids)
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            return dict(zip(dids, pool.map(lambda d: truth(self.sim_url, d), dids), strict=True))

    def after_run(self, run_at: datetime, written: set[str]) -> None:
        """Apply one run at `run_at`; `written` are the DIDs that got a snapshot for its date."""
        window_start = run_at - timedelta(days=self.window_days)
        run_date = run_at.date()
        truths = self._truths(self.users)
        claimed: dict[str, str] = {}
        for did, user in self.users.items():
            now = truths[did]
            if now["status"] != "active":
                user.status = now["status"]  # recorded by the status probe, no snapshot
                continue
            if did not in written:
                continue  # failed this run: nothing of it was written
            user.status = "active"
            posts = {}
            for post in now["posts"]:
                created = post_time(post["createdAt"], post["indexedAt"])
                counts = (post["likeCount"], post["replyCount"], post["quoteCount"], post["repostCount"])
                posts[post["uri"]] = (created, *counts)
            if not user.backfilled:
                newest = list(posts.items())[: self.backfill_max_posts]
                user.posts = dict(newest)
                user.backfilled = True
                user.window_read_on = run_date
            elif now["postsCount"] != user.posts_count or self._read_due(user, run_date, window_start, posts):
                self._read_window(user, posts, window_start)
                user.window_read_on = run_date
            else:
                # Refresh: the stored window posts get their current counts; nothing new is seen.
                for uri, row in list(user.posts.items()):
                    if row[0] >= window_start:
                        user.posts[uri] = posts[uri]
            user.posts_count = now["postsCount"]
            user.lagging = sorted(
                uri for uri, row in posts.items() if row[0] >= window_start and uri not in user.posts
            )
            if now["handle"] != INVALID_HANDLE:
                claimed[now["handle"]] = did
            user.display_name, user.avatar = now["displayName"], now["avatar"]
            sums = [sum(row[i] for row in user.posts.values()) for i in range(1, 5)]
            user.snapshots[run_date] = (now["followersCount"], now["followsCount"], now["postsCount"], *sums)
        # Handles: a refreshed user takes its handle (handle.invalid keeps the old one); a row
        # still holding a handle someone else took gives way to its DID.
        for handle, did in claimed.items():
            for other in self.users.values():
                if other.handle == handle and other.did != did:
                    other.handle = other.did
            self.users[did].handle = handle

    def _read_due(self, user: UserExpectation, run_date: date, window_start: datetime, posts: dict) -> bool:
        """Whether the run reads this user's window although postsCount did not change.

        The run's read strategy (etl.plan): a user with posts stored inside the window is re-read
        on its periodic slot, or when one of those posts vanished (a new one must have come);
        a user with nothing inside the window is not read at all.
        """
        stored = [uri for uri, row in user.posts.items() if row[0] >= window_start]
        if not stored:
            return False
        if any(uri not in posts for uri in stored):
            return True
        return full_read_due(user.did, run_date, user.window_read_on, self.full_read_days)

    @staticmethod
    def _read_window(user: UserExpectation, posts: dict, window_start: datetime) -> None:
        """A complete window read: window posts fresh, the window's vanished posts deleted."""
        for uri, row in posts.items():
            if row[0] >= window_start:
                user.posts[uri] = row
        for uri in [u for u, row in user.posts.items() if row[0] >= window_start and u not in posts]:
            del user.posts[uri]

    def lagging(self) -> dict[str, list[str]]:
        """Users whose window holds posts the read strategy has not seen yet (by design, see README)."""
        return {did: user.lagging for did, user in self.users.items() if user.lagging}

    def check(self, conn: psycopg.Connection, dates: Iterable[date]) -> Verdict:
        """Compare the database with the expectation: snapshots of `dates`, posts, users."""
        verdict = Verdict(users=len(self.users))
        dates = list(dates)
        dids = list(self.users)
        snaps = {
            (did, day): tuple(rest)
            for did, day, *rest in conn.execute(OPS.verify_snapshots, {"dids": dids, "dates": dates})
        }
        for (did, day), row in sorted(snaps.items()):
            if day not in self.users[did].snapshots:
                verdict.mismatches.append(f"{did} {day}: unexpected snapshot {row}")
        for did, user in self.users.items():
            for day in dates:
                want = user.snapshots.get(day)
                got = snaps.get((did, day))
                if want is None:
                    continue
                verdict.snapshots += 1
                if got != want:
                    verdict.mismatches.append(f"{did} {day}: snapshot {got} != expected {want}")
        stored: dict[str, dict[str, tuple]] = {did: {} for did in dids}
        for uri, did, created, *counts in conn.execute(OPS.verify_posts, {"dids": dids}):
            stored[did][uri] = (created, *counts)
        for did, user in self.users.items():
            verdict.posts += len(user.posts)
            if stored[did] != user.posts:
                missing = sorted(set(user.posts) - set(stored[did]))
                extra = sorted(set(stored[did]) - set(user.posts))
                changed = sorted(u for u in set(user.posts) & set(stored[did]) if user.posts[u] != stored[did][u])
                detail = []
                if missing:
                    detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
                if extra:
                    detail.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
                if changed:
                    u = changed[0]
                    detail.append(f"{len(changed)} differ (e.g. {u}: {stored[did][u]} != {user.posts[u]})")
                verdict.mismatches.append(f"{did}: posts " + "; ".join(detail))
        rows = conn.execute(OPS.verify_users, {"dids": dids}).fetchall()
        for did, handle, name, avatar, status in rows:
            user = self.users[did]
            if handle != user.handle:
                verdict.mismatches.append(f"{did}: handle {handle!r} != expected {user.handle!r}")
            if user.status == "active" and user.snapshots and (name, avatar) != (user.display_name, user.avatar):
                verdict.mismatches.append(f"{did}: profile ({name!r}, {avatar!r}) != ({user.display_name!r}, {user.avatar!r})")
            if user.status is not None and status != user.status:
                verdict.mismatches.append(f"{did}: account_status {status!r} != expected {user.status!r}")
        return verdict
