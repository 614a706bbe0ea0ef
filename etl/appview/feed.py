"""Author feed pages: which items are the user's own posts, and when reading may stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from etl.appview.results import FeedResult
from etl.appview.wire import shown
from etl.validate import Post, post_from_view, sort_time

log = logging.getLogger("etl.appview")

T = TypeVar("T")

REASON_PIN = "app.bsky.feed.defs#reasonPin"
COMPLETE_STOPS = frozenset({"end", "since"})  # stops after which every wanted post was read


def build(builder: Callable[[Any], T | None], view: Any) -> T | None:
    """The builder's result; an unexpected exception drops the item instead of the page."""
    try:
        return builder(view)
    except Exception:
        log.warning("item dropped: %s failed on it", builder.__name__, exc_info=True)
        return None


def collect_own_posts(did: str, feed: list[Any], posts: dict[str, Post]) -> datetime | None:
    """Add the page's posts by `did` to `posts` (first seen wins); return the oldest sort time.

    Items with a reason are skipped: a repost of someone else's post is not this user's, and a
    self-repost or a pin shows a post whose original item sits at its own place in the feed.
    Collecting originals only keeps the posts in the order of their own sort time, so "the
    newest N posts" of a capped backfill means exactly that, whatever was reposted lately.
    Pins do not count for the oldest sort time: a pin sits on top of the feed whatever its age.
    """
    oldest = None
    for item in feed:
        if not isinstance(item, dict):
            log.warning("%s: feed item dropped: not an object (%s)", did, shown(item))
            continue
        reason = item.get("reason")
        if not (isinstance(reason, dict) and reason.get("$type") == REASON_PIN):
            when = sort_time(item)
            if when is not None and (oldest is None or when < oldest):
                oldest = when
        if reason is not None:
            continue
        view = item.get("post")
        author = view.get("author") if isinstance(view, dict) else None
        if not isinstance(author, dict) or author.get("did") != did:
            continue  # a repost of someone else's post: not this user's
        uri = view.get("uri")
        if isinstance(uri, str) and uri in posts:
            continue
        post = build(post_from_view, view)
        if post is not None:
            posts[post.uri] = post
    return oldest


def feed_result(did: str, posts: dict[str, Post], pages: int, stop: str, error: Exception | None = None) -> FeedResult:
    """The FeedResult for a stop reason, logged when it is not a complete read."""
    complete = stop in COMPLETE_STOPS
    if error is not None:
        log.warning("%s: author feed stopped after %d pages: %s", did, pages, error)
    elif not complete:
        log.info("%s: author feed incomplete after %d pages (%s)", did, pages, stop)
    return FeedResult(list(posts.values()), complete, pages, stop, error)
