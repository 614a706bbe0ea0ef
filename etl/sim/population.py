"""The simulated world: users, handles, statuses, posts, reposts, pins and engagement.

Everything is a pure function of (seed, population size, start date, user index, day) computed on
demand from keyed hashes (`ids.Hasher`); nothing is stored per user at start-up, so a million users
cost nothing until asked for. Generated pieces are cached in bounded LRUs.

Time
    The simulated clock is a start date plus a day number: `now(day)` = start date + `day` days +
    12:00:00 UTC. All answers for one day are identical; counts only move when the day advances.

Users (index 0..size-1)
    DID `did:plc:` + 24 base32 chars that encode the index (`ids.encode_did`); user 0 is the official
    `bsky.app` account (active, never renamed), which `etl health` looks up. Handles are
    `WORD<n>.bsky.social` or a custom domain (`WORD<n>.dev`, ...) where `n = index + size * g` and `g`
    counts the user's handle changes so far, so a handle parses back to its user without a table.
    Base status: ~92% active, 3% deactivated, 2% takendown, 3% not_found; ~1.5% of active accounts
    show `handle.invalid`. Followers are Pareto-distributed (most under a few hundred, a few over 100k)
    and drift a little every day.

Day-to-day changes (deterministic)
    - ~2.5% of users change handle every 5-40 days (`handle_changes_on(day)` lists them).
    - Pairs of users (2m, 2m+1) swap handles on a day; every block of 1000 users (or the whole
      population when it is smaller, at least 8 users) holds one guaranteed swap on day 1, 2 or 3
      (`1 + block % 3`) plus rare random ones (`swaps_on(day)`).
    - Active users become deactivated on a later day; each block holds one guaranteed deactivation
      on day `1 + (block + 1) % 3` plus rare random ones (`deactivations_on(day)`).
    - New posts appear as the clock passes their time; ~2% of posts are deleted 30 min to 10 days
      after they were made (they vanish from the feed and from getPosts; postsCount drops).

Posts
    Time is cut into 16-day epochs; per (user, epoch) one hash decides whether the user is active in
    it and how many posts they make (activity classes from lurker to heavy, scaled by `activity`,
    plus one "firehose" user per block of 1000 with well over 10,000 posts whatever the scale, and
    one "celebrity" with 20k-320k followers who posts about daily). A post's time, kind (top level,
    reply in the author's own thread, reply to another user), createdAt oddity, media and engagement
    come from the n-th draw of a generator seeded with hash(seed, user, epoch). RKEY = TID of the
    post's time. createdAt is normally that time with milliseconds and `Z`; a few are written with a
    `+HH:MM` offset, backdated by months, in 2099, or malformed. indexedAt = time + 0.3-8 s. Feed
    sort time = min(indexedAt, createdAt when it parses). Users also repost others' recent posts
    (and sometimes their own). Replies to others and reposts go half the time to a big account
    (bsky.app or a celebrity), half to anyone; a reply whose parent cannot be found points at a post
    that does not exist (shown as notFoundPost).

Engagement
    Each post has final counts (heavy-tailed, scaled by its author's audience) reached along
    `1 - exp(-age / 0.8 days)`: non-decreasing in the day, fast at first, saturating.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from etl.sim import words
from etl.sim.ids import DAY_US, Hasher, cid, decode_did, encode_did, iso, iso_offset, tid, tid_timestamp

EPOCH_DAYS = 16
EPOCH_US = EPOCH_DAYS * DAY_US
DELETE_MIN_US = 30 * 60 * 1_000_000
DELETE_MAX_US = 10 * DAY_US
DELETE_RATE = 0.02
BLOCK = 1000
NOON_US = 12 * 3600 * 1_000_000
_TWO64 = float(2**64)
_MS = 1000
_M64 = 0xFFFFFFFFFFFFFFFF

ACTIVE, DEACTIVATED, TAKENDOWN, NOT_FOUND = "active", "deactivated", "takendown", "not_found"
STATUSES = (ACTIVE, DEACTIVATED, TAKENDOWN, NOT_FOUND)

# Post kinds.
TOP, SELF_REPLY, REPLY = 0, 1, 2
# createdAt variants.
NORMAL, MICROS, OFFSET, BACKDATED, FUTURE, MALFORMED = range(6)
# Media.
NO_MEDIA, IMAGES, VIDEO = 0, 1, 2

# (upper bound of the class draw, name, chance an epoch is active, mean posts per active epoch)
ACTIVITY = (
    (0.30, "lurker", 0.06, 1.5),
    (0.75, "casual", 0.25, 5.0),
    (0.925, "regular", 0.60, 10.0),
    (0.995, "active", 0.85, 28.0),
    (1.0, "heavy", 0.97, 160.0),
)
FIREHOSE = ("firehose", 1.0, 16 * 35.0)

_HANDLE_RE = re.compile(r"^([a-z][a-z-]*?)(\d+)\.(.+)$")


@dataclass(frozen=True, slots=True)
class User:
    """A user's fixed attributes (what does not depend on the day)."""

    index: int
    did: str
    clock_id: int
    created_us: int
    role: str
    activity: str
    p_on: float
    mean_posts: float
    reply_frac: float
    self_thread_frac: float
    repost_ratio: float
    base_status: str
    deactivate_day: int | None
    handle_invalid: bool
    handle_period: int
    handle_phase: int
    swap_partner: int | None
    swap_day: int | None
    display_name: str | None
    description: str | None
    has_avatar: bool
    has_banner: bool
    followers_base: int
    followers_growth: float
    follows_base: int
    lang: str
    pin_epoch: int | None
    pin_pick: int
    audience: float


class Post:
    """One post of the world (the same object is shared by every view that shows it)."""

    __slots__ = (
        "author", "epoch", "gen", "t", "kind", "parent", "root", "deleted_at", "variant",
        "created_us", "indexed_us", "sort_us", "media", "a", "b", "c", "d", "uri", "cid",
    )

    def __init__(self, author: int, epoch: int, gen: int, t: int, a: int, b: int, c: int, d: int) -> None:
        self.author, self.epoch, self.gen, self.t = author, epoch, gen, t
        self.a, self.b, self.c, self.d = a, b, c, d
        self.kind = TOP
        self.parent = -1  # index in the epoch's tuple, for SELF_REPLY
        self.root = -1
        self.deleted_at: int | None = None
        self.variant = NORMAL
        self.created_us: int | None = t
        self.indexed_us = t
        self.sort_us = t
        self.media = NO_MEDIA
        self.uri: str | None = None  # filled on first use by Population.uri / Population.cid
        self.cid: str | None = None

    def exists_at(self, now: int) -> bool:
        """Made at or before `now` and not deleted by then."""
        return self.t <= now and (self.deleted_at is None or self.deleted_at > now)

    def __repr__(self) -> str:
        return f"Post(author={self.author}, epoch={self.epoch}, gen={self.gen}, t={self.t})"


class Repost:
    """A repost by `by` at time `t` of `target` (another user's post or the reposter's own)."""

    __slots__ = ("by", "t", "target")

    def __init__(self, by: int, t: int, target: Post) -> None:
        self.by, self.t, self.target = by, t, target


class Ghost:
    """A reply parent that does not exist in the world (as when a parent was deleted long ago)."""

    __slots__ = ("author", "t", "uri", "cid")

    def __init__(self, author: int, t: int) -> None:
        self.author, self.t = author, t
        self.uri: str | None = None
        self.cid: str | None = None


class Timeline:
    """A user's author feed on one day: rows `(sort_us, t, is_repost, Post | Repost)`, ascending.

    `(sort_us, t, is_repost)` is unique per row, so a cursor that names it finds its place by
    bisection even after rows above it vanished.
    """

    __slots__ = ("rows", "posts_count", "_views")

    def __init__(self, rows: list, posts_count: int) -> None:
        self.rows, self.posts_count = rows, posts_count
        self._views: dict[str, list] = {}

    def view(self, feed_filter: str) -> list:
        """The rows a getAuthorFeed filter keeps; unknown filters act as posts_with_replies."""
        if feed_filter not in ("posts_no_replies", "posts_with_media", "posts_and_author_threads", "posts_with_video"):
            return self.rows
        cached = self._views.get(feed_filter)
        if cached is None:
            cached = self._views[feed_filter] = [row for row in self.rows if _passes(feed_filter, row[3])]
        return cached

    def count_since(self, since_us: int) -> int:
        """How many rows have a sort time at or after `since_us`."""
        return len(self.rows) - bisect.bisect_left(self.rows, (since_us,))


def _passes(feed_filter: str, entry: Post | Repost) -> bool:
    """Whether a feed entry survives a getAuthorFeed filter (the AppView's rules)."""
    if isinstance(entry, Repost):
        return feed_filter in ("posts_no_replies", "posts_and_author_threads")
    if feed_filter == "posts_no_replies":
        return entry.kind == TOP
    if feed_filter == "posts_and_author_threads":
        return entry.kind in (TOP, SELF_REPLY)
    if feed_filter == "posts_with_media":
        return entry.media != NO_MEDIA
    return entry.media == VIDEO


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's profile as the AppView knows it on one day (counts None when not active)."""

    index: int
    did: str
    handle: str
    status: str
    followers: int | None
    follows: int | None
    posts_count: int | None
    pinned: Post | None


class Population:
    """A deterministic world of `size` users; see the module docstring for the rules."""

    def __init__(
        self,
        size: int,
        seed: int | str = 0,
        start: date | None = None,
        *,
        activity: float = 1.0,
        cache_users: int = 100_000,
        cache_epochs: int = 30_000,
        cache_timelines: int = 500,
        cache_profiles: int = 20_000,
    ) -> None:
        if size < 1:
            raise ValueError("a population needs at least one user")
        if activity <= 0:
            raise ValueError("activity must be > 0")
        self.size = size
        self.seed = seed
        self.activity = activity
        self.start = start or datetime.now(UTC).date()
        self.start_us = int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()) * 1_000_000
        self.hasher = Hasher(f"{seed}")
        self.user = lru_cache(maxsize=cache_users)(self._make_user)
        self.block_roles = lru_cache(maxsize=4096)(self._make_block_roles)
        self.posts = lru_cache(maxsize=cache_epochs)(self._make_posts)
        self.reposts = lru_cache(maxsize=cache_epochs // 4)(self._make_reposts)
        self.timeline = lru_cache(maxsize=cache_timelines)(self._make_timeline)
        self.profile = lru_cache(maxsize=cache_profiles)(self._make_profile)
        self.reply_refs = lru_cache(maxsize=cache_epochs)(self._make_reply_refs)
        self.epoch_rows = lru_cache(maxsize=cache_epochs // 4)(self._make_epoch_rows)
        self.final_posts_count = lru_cache(maxsize=cache_profiles)(self._make_final_posts_count)
        # Epochs up to this one hold no pending deletion on any day >= 0: their rows are final.
        self.final_epoch = self.epoch_of(self.now_us(0) - DELETE_MAX_US) - 1

    # --- clock -------------------------------------------------------------------------------
    def now_us(self, day: int) -> int:
        """The simulated "now" of a day: start date + day days + 12:00 UTC, in microseconds."""
        return self.start_us + day * DAY_US + NOON_US

    def epoch_of(self, us: int) -> int:
        """The 16-day epoch a microsecond timestamp falls in (epoch 0 starts on the start date)."""
        return (us - self.start_us) // EPOCH_US

    def epoch_start(self, epoch: int) -> int:
        """First microsecond of an epoch."""
        return self.start_us + epoch * EPOCH_US

    # --- users -------------------------------------------------------------------------------
    def did(self, index: int) -> str:
        """User `index`'s DID."""
        return self.user(index).did

    def index_of_did(self, did: str) -> int | None:
        """The user a DID names, or None for a DID outside this world."""
        index = decode_did(self.hasher, did)
        return index if index is not None and index < self.size else None

    def _make_block_roles(self, block: int) -> dict[int, tuple[str, int | None]]:
        """The guaranteed events of one block of users: a swap pair, a deactivation, a firehose."""
        start = block * BLOCK
        size = min(BLOCK, self.size - start)
        if size < 8:
            return {}
        h = self.hasher.h4("block", block)
        half = size // 2
        swap = start + 2 * (h[0] % (half // 2))
        if swap == 0:
            swap = 2
        second = size - half
        # Three distinct places in the second half: a deactivation, a firehose, a celebrity.
        deact = start + half + h[1] % second
        fire = start + half + (deact - start - half + 1 + h[2] % (second - 2)) % second
        celebrity = next(
            start + half + (fire - start - half + k) % second
            for k in range(1, second)
            if start + half + (fire - start - half + k) % second != deact
        )
        swap_day = 1 + block % 3
        return {
            swap: ("swap", swap_day),
            swap + 1: ("swap", swap_day),
            deact: ("deactivate", 1 + (block + 1) % 3),
            fire: ("firehose", None),
            celebrity: ("celebrity", None),
        }

    def _swap(self, index: int) -> tuple[int, int] | None:
        """(partner, day) when user `index` swaps handles with its pair partner, else None."""
        partner = index ^ 1
        if index < 2 or partner >= self.size:
            return None
        roles = self.block_roles(index // BLOCK)
        role = roles.get(index)
        if role is not None:
            return (partner, role[1]) if role[0] == "swap" else None
        if partner in roles:
            return None
        h = self.hasher.h64("swap", index // 2)
        if h / _TWO64 < 0.002:
            return partner, 1 + (h >> 8) % 45
        return None

    def _make_user(self, index: int) -> User:
        """Draw user `index`'s fixed attributes."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        hs = self.hasher
        h0, h1, h2, h3 = hs.h4("user", index)
        g0, g1, g2, g3 = hs.h4("user2", index)
        did = encode_did(hs, index)
        role = "official" if index == 0 else (self.block_roles(index // BLOCK).get(index, ("", None))[0])
        swap = self._swap(index)
        if swap is not None:
            role = "swap"
        # Account age: up to two years before the start date (whole milliseconds).
        if role in ("official", "celebrity"):
            age_days = 800.0
        elif role == "firehose":
            age_days = 650 + 80 * ((h0 & 0xFFFF) / 65536)
        else:
            age_days = 20 + 710 * ((h0 & 0xFFFF) / 65536)
        created_us = self.start_us - int(age_days * DAY_US) // 1000 * 1000
        # Activity class.
        draw = ((h0 >> 16) & 0xFFFF) / 65536
        if role == "firehose":
            activity, p_on, mean = FIREHOSE
        elif role in ("official", "celebrity"):
            activity, p_on, mean = "regular", 0.95, 16.0
        else:
            activity, p_on, mean = next((n, p, m) for bound, n, p, m in ACTIVITY if draw < bound)
            mean *= self.activity  # the firehose and official accounts keep their volume
        reply_frac = 0.05 + 0.5 * (((h0 >> 32) & 0xFF) / 255)
        self_thread_frac = 0.1 + 0.4 * (((h0 >> 40) & 0xFF) / 255)
        repost_draw = ((h0 >> 48) & 0xFF) / 255
        repost_ratio = 2.0 if repost_draw > 0.95 else 0.6 * repost_draw
        # Status.
        sdraw = (h1 & 0xFFFF) / 65536
        deactivate_day = None
        if role in ("official", "swap", "firehose", "celebrity"):
            status = ACTIVE
        elif role == "deactivate":
            status = ACTIVE
            deactivate_day = self.block_roles(index // BLOCK)[index][1]
        elif sdraw < 0.03:
            status = DEACTIVATED
        elif sdraw < 0.05:
            status = TAKENDOWN
        elif sdraw < 0.08:
            status = NOT_FOUND
        else:
            status = ACTIVE
            if ((h1 >> 16) & 0xFFFF) / 65536 < 0.004:
                deactivate_day = 1 + (h1 >> 32) % 60
        plain = status == ACTIVE and role == "" and deactivate_day is None
        handle_invalid = plain and ((h1 >> 48) & 0xFFFF) / 65536 < 0.015
        changes = plain and not handle_invalid and (h2 & 0xFFFF) / 65536 < 0.025
        period = 5 + (h2 >> 16) % 36 if changes else 0
        phase = (h2 >> 32) % period if period else 0
        # Profile strings.
        ndraw = (h3 & 0xFF) / 256
        if role == "official":
            display_name: str | None = "Bluesky"
        elif ndraw < 0.12:
            display_name = None
        elif ndraw < 0.16:
            display_name = words.DISPLAY_NAMES_ODD[(h3 >> 8) % len(words.DISPLAY_NAMES_ODD)]
        else:
            first = words.FIRST_NAMES[(h3 >> 8) % len(words.FIRST_NAMES)]
            last = words.LAST_NAMES[(h3 >> 16) % len(words.LAST_NAMES)] if (h3 >> 24) & 1 else ""
            suffix = words.NAME_SUFFIXES[(h3 >> 25) % len(words.NAME_SUFFIXES)]
            display_name = (f"{first} {last}" if last else first) + suffix
        description = None if (h3 >> 32) & 0xFF < 77 else words.DESCRIPTIONS[(h3 >> 40) % len(words.DESCRIPTIONS)]
        # Audience: Pareto followers (x_m = 40, alpha = 1.2), log-normal-ish follows.
        fu = ((g1 & 0xFFFFFFFF) + 1) / 2**32
        followers = int(40 * fu ** (-1 / 1.2)) - 40 + int((g1 >> 32) % 7)
        if role == "firehose":
            followers = 100_000 + int((g1 >> 32) % 500_000)
        elif role == "celebrity":
            followers = 20_000 + int((g1 >> 32) % 300_000)
        elif role == "official":
            followers = 32_000_000
        followers = max(0, min(followers, 50_000_000))
        growth = -0.001 + 0.005 * ((g2 & 0xFFFF) / 65536)
        follows = 0 if (g2 >> 16) & 0xFF < 13 else int(300 * (-math.log(((g2 >> 24) & 0xFFFF) / 65536 + 1e-6)) ** 1.5)
        lang = words.LANGUAGES[(g2 >> 40) % len(words.LANGUAGES)]
        # Pinned post: one of the user's posts from an epoch before the start.
        pin_epoch = None
        first_epoch, last_epoch = self.epoch_of(created_us), self.epoch_of(self.start_us) - 1
        if (g3 & 0xFF) < 26 and first_epoch <= last_epoch:
            pin_epoch = first_epoch + (g3 >> 8) % (last_epoch - first_epoch + 1)
        return User(
            index=index,
            did=did,
            clock_id=int((g3 >> 32) % 1024),
            created_us=created_us,
            role=role,
            activity=activity,
            p_on=p_on,
            mean_posts=mean,
            reply_frac=reply_frac,
            self_thread_frac=self_thread_frac,
            repost_ratio=repost_ratio,
            base_status=status,
            deactivate_day=deactivate_day,
            handle_invalid=handle_invalid,
            handle_period=period,
            handle_phase=phase,
            swap_partner=swap[0] if swap else None,
            swap_day=swap[1] if swap else None,
            display_name=display_name,
            description=description,
            has_avatar=(g0 & 0xFF) >= 38,
            has_banner=(g0 >> 8) & 0xFF < 102,
            followers_base=followers,
            followers_growth=growth,
            follows_base=min(follows, 20_000),
            lang=lang,
            pin_epoch=pin_epoch,
            pin_pick=int(g3 >> 48),
            audience=0.05 * followers**0.85 + 0.3,
        )

    def avatar(self, index: int) -> str | None:
        """The avatar URL (CDN style), or None for the ~15% without one."""
        user = self.user(index)
        if not user.has_avatar:
            return None
        return f"https://cdn.bsky.app/img/avatar/plain/{user.did}/{cid(self.hasher, 'avatar', index, raw=True)}@jpeg"

    def banner(self, index: int) -> str | None:
        """The banner URL, or None."""
        user = self.user(index)
        if not user.has_banner:
            return None
        return f"https://cdn.bsky.app/img/banner/plain/{user.did}/{cid(self.hasher, 'banner', index, raw=True)}@jpeg"

    def _popular_or_random(self, h: int, index: int) -> int:
        """Whom a user replies to or reposts: half the time a big account (bsky.app or a
        block's celebrity, as attention concentrates on them), else anyone."""
        if h & 1:
            blocks = max(1, -(-self.size // BLOCK))
            block = (h >> 1) % (blocks + 1)
            roles = self.block_roles(block) if block < blocks else {}
            author = next((i for i, role in roles.items() if role[0] == "celebrity"), 0)
        else:
            author = (h >> 1) % self.size
        return (author + 1) % self.size if author == index else author

    def status(self, index: int, day: int) -> str:
        """active | deactivated | takendown | not_found on a day."""
        user = self.user(index)
        if user.deactivate_day is not None and day >= user.deactivate_day:
            return DEACTIVATED
        return user.base_status

    # --- handles -----------------------------------------------------------------------------
    def handle_generation(self, index: int, day: int) -> int:
        """How many times user `index` has changed handle by `day` (0 before any change)."""
        user = self.user(index)
        if not user.handle_period or day <= 0:
            return 0
        return (day + user.handle_phase) // user.handle_period

    def handle_text(self, index: int, generation: int) -> str:
        """The handle user `index` takes at its `generation`-th change (unique in the world)."""
        if index == 0:
            return "bsky.app"
        number = index + self.size * generation
        h = self.hasher.h64("handle", index, generation)
        word = words.HANDLE_WORDS[h % len(words.HANDLE_WORDS)]
        style = (h >> 16) % 100
        prefix = f"{words.HYPHEN_WORDS[(h >> 24) % len(words.HYPHEN_WORDS)]}-{word}" if style < 6 else word
        suffix = words.CUSTOM_TLDS[(h >> 32) % len(words.CUSTOM_TLDS)] if style >= 90 else "bsky.social"
        return f"{prefix}{number}.{suffix}"

    def own_handle(self, index: int, day: int) -> str:
        """The handle the user's own history gives it, before swaps and handle.invalid."""
        return self.handle_text(index, self.handle_generation(index, day))

    def handle(self, index: int, day: int) -> str:
        """The handle the AppView shows for user `index` on `day`."""
        user = self.user(index)
        if user.handle_invalid:
            return "handle.invalid"
        if user.swap_partner is not None and day >= user.swap_day:
            return self.own_handle(user.swap_partner, day)
        return self.own_handle(index, day)

    def index_of_handle(self, handle: str, day: int) -> int | None:
        """The user holding `handle` on `day` (case-insensitive), or None."""
        handle = handle.lower()
        if handle == "bsky.app":
            return 0
        match = _HANDLE_RE.match(handle)
        if match is None or match[2].startswith("0"):
            return None
        index = int(match[2]) % self.size
        holder = index
        user = self.user(index)
        if user.swap_partner is not None and day >= user.swap_day:
            holder = user.swap_partner
        return holder if self.handle(holder, day) == handle else None

    def resolve(self, actor: str, day: int) -> int | None:
        """The user an at-identifier (DID or handle) names on `day`, or None."""
        if actor.startswith("did:"):
            return self.index_of_did(actor)
        return self.index_of_handle(actor, day)

    # --- posts -------------------------------------------------------------------------------
    def epoch_plan(self, index: int, epoch: int) -> tuple[int, int, int, dict[int, int]]:
        """(lo, hi, count, deletions) of an epoch: its time range, post count, doomed posts."""
        user = self.user(index)
        lo = max(self.epoch_start(epoch), user.created_us)
        hi = self.epoch_start(epoch + 1)
        if lo >= hi:
            return lo, hi, 0, {}
        a, b, c, d = self.hasher.h4("epoch", index, epoch)
        if a / _TWO64 >= user.p_on:
            return lo, hi, 0, {}
        burst = min(4.0, -math.log((b + 1) / _TWO64))
        count = int(user.mean_posts * burst * (hi - lo) / EPOCH_US + c / _TWO64)
        deletions: dict[int, int] = {}
        if count:
            for k in range(int(count * DELETE_RATE + d / _TWO64)):
                h = self.hasher.h64("delete", index, epoch, k)
                deletions.setdefault(h % count, DELETE_MIN_US + (h >> 20) % (DELETE_MAX_US - DELETE_MIN_US))
        return lo, hi, count, deletions

    def _make_posts(self, index: int, epoch: int) -> tuple[Post, ...]:
        """User `index`'s posts made in `epoch`, by time (deleted ones included, with their time)."""
        lo, hi, count, deletions = self.epoch_plan(index, epoch)
        if not count:
            return ()
        user = self.user(index)
        span = (hi - lo) // _MS
        # One keyed hash seeds a generator for the whole epoch: far cheaper than a hash per post.
        bits = random.Random(self.hasher.h64("posts", index, epoch)).getrandbits
        posts = []
        for gen in range(count):
            v = bits(256)
            a, b, c, d = v & _M64, (v >> 64) & _M64, (v >> 128) & _M64, v >> 192
            post = Post(index, epoch, gen, lo + (a % span) * _MS, a, b, c, d)
            delay = deletions.get(gen)
            if delay is not None:
                post.deleted_at = delay  # made absolute below, once the time is final
            posts.append(post)
        posts.sort(key=_by_time)
        last = -1
        for post in posts:  # one post per millisecond keeps TIDs unique within the user
            if post.t <= last:
                post.t = last + _MS
            last = post.t
        previous_thread = -1  # the last post a self-reply could hang from
        reply_frac, self_frac = user.reply_frac, user.self_thread_frac
        for position, post in enumerate(posts):
            if post.deleted_at is not None:
                post.deleted_at += post.t
            b, c = post.b, post.c
            if (b & 0xFFFF) / 65536 < reply_frac:
                if ((b >> 16) & 0xFF) / 256 < self_frac:
                    if previous_thread >= 0:
                        parent = posts[previous_thread]
                        post.kind, post.parent = SELF_REPLY, previous_thread
                        post.root = parent.root if parent.kind == SELF_REPLY else previous_thread
                else:
                    post.kind = REPLY
            if post.kind != REPLY:
                previous_thread = position
            media = ((b >> 24) & 0xFF) / 256
            post.media = IMAGES if media < 0.08 else VIDEO if media < 0.1 else NO_MEDIA
            self._set_times(post)
        return tuple(posts)

    def _set_times(self, post: Post) -> None:
        """createdAt variant, indexedAt and feed sort time of a post."""
        t, c = post.t, post.c
        post.indexed_us = t + (300 + post.d % 7700) * _MS
        draw = (c & 0xFFFFF) / 2**20
        if draw < 0.003:
            post.variant = OFFSET
        elif draw < 0.004:
            post.variant, post.created_us = BACKDATED, t - (60 + (c >> 20) % 300) * DAY_US
        elif draw < 0.0045:
            post.variant = FUTURE
            moment = datetime.fromtimestamp(t / 1_000_000, UTC)
            post.created_us = int(moment.replace(year=2099, day=min(moment.day, 28)).timestamp() * 1_000_000)
        elif draw < 0.005:
            post.variant, post.created_us = MALFORMED, None
        elif draw < 0.02:
            post.variant, post.created_us = MICROS, t + (c >> 20) % 1000
        created = post.created_us
        post.sort_us = post.indexed_us if created is None or created > post.indexed_us else created

    def created_at(self, post: Post) -> str:
        """The raw createdAt string the post's record carries (sometimes not a datetime)."""
        variant, t = post.variant, post.t
        if variant == NORMAL:
            return iso(t)
        if variant == MICROS:
            return iso(post.created_us or t, 6)
        if variant == OFFSET:
            offsets = (540, 330, -300, -420, 60, 120, -180, 600, 345, -570)
            return iso_offset(t, offsets[(post.c >> 20) % len(offsets)])
        if variant in (BACKDATED, FUTURE):
            return iso(post.created_us or t)
        text = iso(t)
        forms = (
            text[:10] + " " + text[11:19],  # a space instead of T and no zone
            text[:19],  # no zone
            str(t // 1_000_000),  # unix seconds
            text[:10],  # a date alone
            text[:4] + "-02-30T10:00:00.000Z",  # a date that does not exist
            text[:23] + "-00:00",  # "unknown offset", rejected by RFC 3339 profiles
            "yesterday",
        )
        return forms[(post.c >> 20) % len(forms)]

    def indexed_at(self, post: Post) -> str:
        """indexedAt: always a valid datetime."""
        return iso(post.indexed_us)

    def rkey(self, post: Post) -> str:
        """The post's record key: the TID of its time and its author's clock id."""
        return tid(post.t, self.user(post.author).clock_id)

    def uri(self, post: Post | Ghost) -> str:
        """at://DID/app.bsky.feed.post/RKEY."""
        uri = post.uri
        if uri is None:
            user = self.user(post.author)
            uri = post.uri = f"at://{user.did}/app.bsky.feed.post/{tid(post.t, user.clock_id)}"
        return uri

    def cid(self, post: Post | Ghost) -> str:
        """The CID of the post's record."""
        value = post.cid
        if value is None:
            value = post.cid = cid(self.hasher, "post", post.author, post.t)
        return value

    def find_post(self, index: int, rkey: str) -> Post | None:
        """User `index`'s post with this record key (deleted or not), or None."""
        t = tid_timestamp(rkey)
        if t is None:
            return None
        user = self.user(index)
        if tid(t, user.clock_id) != rkey:
            return None
        epoch = self.epoch_of(t)
        for e in (epoch, epoch - 1):
            posts = self.posts(index, e)
            pos = bisect.bisect_left(posts, t, key=_by_time)
            if pos < len(posts) and posts[pos].t == t:
                return posts[pos]
        return None

    def _make_reposts(self, index: int, epoch: int) -> tuple[Repost, ...]:
        """User `index`'s reposts made in `epoch`, by time (targets resolved, missing ones dropped)."""
        lo, hi, count, _ = self.epoch_plan(index, epoch)
        user = self.user(index)
        n = int(count * user.repost_ratio + self.hasher.u("reposts", index, epoch)) if count else 0
        if not n:
            return ()
        span = (hi - lo) // _MS
        out: list[Repost] = []
        used: set[int] = set()
        bits = random.Random(self.hasher.h64("reposts", index, epoch)).getrandbits
        for _ in range(n):
            v = bits(256)
            a, b, c, d = v & _M64, (v >> 64) & _M64, (v >> 128) & _M64, v >> 192
            t = lo + (a % span) * _MS
            if t in used:
                continue
            if (b & 0xFF) < 20:  # about 8%: the user's own post, shown a second time as a repost
                author, back = index, 0
            else:
                author = self._popular_or_random(c, index)
                back = (d % (5 * 86_400_000)) * _MS
            target = self._pick_before(author, t - back, t, int(b >> 8))
            if target is not None:
                used.add(t)
                out.append(Repost(index, t, target))
        out.sort(key=_by_time)
        return tuple(out)

    def _pick_before(self, author: int, around: int, before: int, pick: int) -> Post | None:
        """One of `author`'s posts made before `before`, near `around` (None when none is)."""
        epoch = self.epoch_of(around)
        for e in (epoch, epoch - 1):
            posts = self.posts(author, e)
            end = bisect.bisect_left(posts, min(around, before), key=_by_time)
            if end:
                return posts[end - 1 - pick % min(end, 8)]
        return None

    def _make_reply_refs(self, post: Post) -> tuple[Post | Ghost, Post | Ghost]:
        """(parent, root) of a reply; for replies to others, a post of another user or a Ghost."""
        if post.kind == SELF_REPLY:
            siblings = self.posts(post.author, post.epoch)
            return siblings[post.parent], siblings[post.root]
        for attempt in range(4):  # most users post rarely: look until an author with posts then
            h = self.hasher.h64("parent", post.author, post.epoch, post.gen, attempt)
            author = self._popular_or_random(h, post.author)
            around = post.t - (h >> 32) % (3 * 86_400_000) * _MS
            epoch = self.epoch_of(around)
            for e in (epoch, epoch - 1):
                posts = self.posts(author, e)
                end = bisect.bisect_left(posts, around, key=_by_time)
                for k in range(end - 1, max(-1, end - 9), -1):
                    parent = posts[k]
                    if parent.kind != REPLY:
                        root = posts[parent.root] if parent.kind == SELF_REPLY else parent
                        return parent, root
        ghost = Ghost((post.author + 1) % self.size, post.t - DAY_US)
        return ghost, ghost

    def pinned(self, index: int, day: int) -> Post | None:
        """The user's pinned post on `day`, if any (one of their own, possibly old)."""
        user = self.user(index)
        if user.pin_epoch is None:
            return None
        posts = self.posts(index, user.pin_epoch)
        if not posts:
            return None
        post = posts[user.pin_pick % len(posts)]
        return post if post.exists_at(self.now_us(day)) else None

    # --- per-day views ------------------------------------------------------------------------
    def _make_epoch_rows(self, index: int, epoch: int) -> tuple[list, list, int]:
        """Feed rows of a final epoch: (rows, [(row, day the target's author deactivates)], own)."""
        rows = [(p.sort_us, p.t, 0, p) for p in self.posts(index, epoch) if p.deleted_at is None]
        own = len(rows)
        conditional = []
        for repost in self.reposts(index, epoch):
            target = repost.target
            if target.deleted_at is not None:
                continue
            row = (repost.t, repost.t, 1, repost)
            author = self.user(target.author)
            if target.author == index:
                rows.append(row)
            elif author.base_status == ACTIVE:
                if author.deactivate_day is None:
                    rows.append(row)
                else:
                    conditional.append((row, author.deactivate_day))
        return rows, conditional, own

    def _make_timeline(self, index: int, day: int) -> Timeline:
        """Every item getAuthorFeed (posts_with_replies) shows for the user on `day`, sorted."""
        if self.status(index, day) != ACTIVE:
            return Timeline([], 0)
        now = self.now_us(day)
        user = self.user(index)
        rows: list[tuple[int, int, int, Post | Repost]] = []
        own = 0
        for epoch in range(self.epoch_of(user.created_us), self.epoch_of(now) + 1):
            if epoch <= self.final_epoch:
                fixed, conditional, fixed_own = self.epoch_rows(index, epoch)
                rows += fixed
                own += fixed_own
                rows += [row for row, deactivates in conditional if day < deactivates]
                continue
            for post in self.posts(index, epoch):
                if post.t > now:
                    break
                if post.deleted_at is None or post.deleted_at > now:
                    rows.append((post.sort_us, post.t, 0, post))
                    own += 1
            for repost in self.reposts(index, epoch):
                if repost.t > now:
                    break
                target = repost.target
                if target.exists_at(now) and (target.author == index or self.status(target.author, day) == ACTIVE):
                    rows.append((repost.t, repost.t, 1, repost))
        rows.sort()  # (sort_us, t, is_repost) is unique, so the Post objects are never compared
        return Timeline(rows, own)

    def _make_final_posts_count(self, index: int) -> int:
        """Posts left in the user's final epochs (the same on every day >= 0)."""
        total = 0
        for epoch in range(self.epoch_of(self.user(index).created_us), self.final_epoch + 1):
            _, _, count, deletions = self.epoch_plan(index, epoch)
            total += count - len(deletions)
        return total

    def posts_count(self, index: int, day: int) -> int:
        """Own existing posts (replies included, reposts not) made at or before now."""
        now = self.now_us(day)
        user = self.user(index)
        total = self.final_posts_count(index)
        for epoch in range(max(self.epoch_of(user.created_us), self.final_epoch + 1), self.epoch_of(now) + 1):
            if self.epoch_start(epoch + 1) + DELETE_MAX_US <= now:
                _, _, count, deletions = self.epoch_plan(index, epoch)
                total += count - len(deletions)  # every deletion of this epoch is in the past
            else:
                total += sum(1 for post in self.posts(index, epoch) if post.exists_at(now))
        return total

    def _make_profile(self, index: int, day: int) -> Profile:
        """The profile numbers of user `index` on `day` (None counts for inactive accounts)."""
        user = self.user(index)
        status = self.status(index, day)
        handle = self.handle(index, day)
        if status != ACTIVE:
            return Profile(index, user.did, handle, status, None, None, None, None)
        h = self.hasher.h64("drift", index, day)
        base = user.followers_base
        noise = ((h & 0xFFFF) / 65536 - 0.5) * 0.6 * math.sqrt(base)
        followers = max(0, round(base * (1 + user.followers_growth * day) + noise))
        follows = max(0, user.follows_base + int(((h >> 16) % 5) - 2) * (1 if user.follows_base else 0))
        return Profile(
            index, user.did, handle, status, followers, follows, self.posts_count(index, day), self.pinned(index, day)
        )

    def engagement(self, post: Post, day: int) -> tuple[int, int, int, int, int]:
        """(likes, replies, reposts, quotes, bookmarks) of a post as of `day`'s now."""
        age = (self.now_us(day) - post.t) / DAY_US
        if age <= 0:
            return 0, 0, 0, 0, 0
        grown = 1.0 - math.exp(-age / 0.8)
        u = ((post.b >> 40) + 1) / 2**24
        likes = min(self.user(post.author).audience * (u ** (-1 / 1.3) - 1), 3_000_000.0)
        c = post.c
        replies = likes * (0.02 + 0.25 * ((c >> 32) & 0xFF) / 255)
        reposts = likes * (0.03 + 0.2 * ((c >> 40) & 0xFF) / 255)
        quotes = likes * (0.04 * ((c >> 48) & 0xFF) / 255)
        bookmarks = likes * (0.05 * ((c >> 56) & 0xFF) / 255)
        return int(likes * grown), int(replies * grown), int(reposts * grown), int(quotes * grown), int(bookmarks * grown)

    # --- events, for tests and demos -----------------------------------------------------------
    def swaps_on(self, day: int) -> list[tuple[int, int]]:
        """Pairs of users who swap handles on `day` (scans the population: O(size))."""
        return [(i, i + 1) for i in range(2, self.size - 1, 2) if self.user(i).swap_day == day]

    def deactivations_on(self, day: int) -> list[int]:
        """Users who become deactivated on `day` (scans the population: O(size))."""
        return [i for i in range(self.size) if self.user(i).deactivate_day == day]

    def handle_changes_on(self, day: int) -> list[int]:
        """Users whose own handle changes on `day`, swaps excluded (scans the population)."""
        return [
            i for i in range(self.size)
            if day > 0 and self.handle_generation(i, day) != self.handle_generation(i, day - 1)
        ]


def _by_time(item: Post | Repost) -> int:
    return item.t

