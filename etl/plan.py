"""What each user needs from the AppView this run: the fewest requests that keep the numbers right."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from etl.shards import shard_of

# The feed is read a little past the window start. A post's feed position is
# min(indexedAt, createdAt) while the window is by createdAt, and createdAt may run ahead of
# indexedAt by the clock slack validate.post_time tolerates (10 minutes); reading this much
# further guarantees every post created inside the window was on a page we read.
FEED_MARGIN = timedelta(minutes=15)


class Mode(enum.Enum):
    """How a user's posts are read this run."""

    BACKFILL = "backfill"  # never read: the whole history, up to backfill_max_posts
    WINDOW = "window"  # the feed down to the window start
    REFRESH = "refresh"  # only the stored window posts, through getPosts batches
    SKIP = "skip"  # nothing to read: no new posts, none inside the window


@dataclass(frozen=True)
class UserContext:
    """What the database remembers of a user (etl_user_state and the stored window posts)."""

    did: str
    handle: str
    backfilled: bool
    posts_count: int | None
    window_read_on: date | None
    window_uris: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    """The run's engagement window: posts created at or after `start` get fresh counts."""

    run_at: datetime
    days: int

    @property
    def start(self) -> datetime:
        return self.run_at - timedelta(days=self.days)

    @property
    def feed_since(self) -> datetime:
        return self.start - FEED_MARGIN


def full_read_due(did: str, run_date: date, last_read: date | None, every_days: int) -> bool:
    """Whether a user's window is re-read by feed today even though postsCount did not change.

    A post added and another deleted between two runs leave postsCount unchanged; a periodic
    read catches that. Each user gets a fixed slot day (from a hash of the DID) so the reads are
    spread evenly over the period instead of all falling on the same day.
    """
    if every_days <= 1:
        return True
    if last_read is None or (run_date - last_read).days >= every_days:
        return True
    slot = shard_of(did, every_days)
    return run_date.toordinal() % every_days == slot and last_read < run_date


def choose_mode(ctx: UserContext, posts_count: int, run_date: date, full_read_days: int) -> Mode:
    """The cheapest way to bring this user's stored posts up to date."""
    if not ctx.backfilled:
        return Mode.BACKFILL
    if ctx.posts_count is None or posts_count != ctx.posts_count:
        return Mode.WINDOW
    if not ctx.window_uris:
        # Nothing of theirs inside the window and postsCount unchanged: nothing can have changed
        # that the window covers.
        return Mode.SKIP
    if full_read_due(ctx.did, run_date, ctx.window_read_on, full_read_days):
        return Mode.WINDOW
    return Mode.REFRESH
