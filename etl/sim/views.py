"""Lexicon-shaped JSON objects of the simulated world (app.bsky.actor.defs, app.bsky.feed.defs).

`Renderer` turns population data into `profileViewDetailed`, `profileViewBasic`, `postView`,
`feedViewPost` and `replyRef` dicts exactly as the lexicons describe them (union members carry
`$type`), applying the data faults (`hostile`, `bad_counts`) of its `Faults`. A new fault
configuration gets a new Renderer, so its caches never serve stale fault data.
Cached dicts are shared between answers and must never be mutated by callers.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache

import orjson

from etl.sim import words
from etl.sim.faults import HOSTILE_NAMES, HOSTILE_TEXTS, Faults
from etl.sim.ids import cid, iso, tid
from etl.sim.population import (
    ACTIVE,
    IMAGES,
    NO_MEDIA,
    SELF_REPLY,
    TOP,
    Ghost,
    Population,
    Post,
    Repost,
)

POST_VIEW = "app.bsky.feed.defs#postView"
NOT_FOUND_POST = "app.bsky.feed.defs#notFoundPost"
REASON_REPOST = "app.bsky.feed.defs#reasonRepost"
REASON_PIN = "app.bsky.feed.defs#reasonPin"
_COUNT_KEYS = ("likeCount", "replyCount", "repostCount", "quoteCount")
_PROFILE_COUNT_KEYS = ("followersCount", "followsCount", "postsCount")


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON; strings with lone surrogates fall back to `\\uXXXX` escapes."""
    # orjson writes a 100-item feed page about ten times faster than the stdlib, and the
    # simulator must keep up with the ETL in benchmarks. It refuses lone surrogates (hostile
    # data), which the stdlib escapes as the real AppView does.
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), check_circular=False).encode("ascii")


class Renderer:
    """Builds lexicon objects for one population under one fault configuration."""

    def __init__(self, population: Population, faults: Faults) -> None:
        self.pop = population
        self.faults = faults
        self.basic = lru_cache(maxsize=10_000)(self._make_basic)
        self.record = lru_cache(maxsize=10_000)(self._make_record)

    # --- profiles ----------------------------------------------------------------------------
    def _hostile_name(self, did: str) -> str | None:
        if not self.faults.data("hostile", did, did):
            return None
        return HOSTILE_NAMES[self.faults.pick("hostile-name", did) % len(HOSTILE_NAMES)]()

    def display_name(self, index: int) -> str | None:
        """The displayName as served (a hostile one under the `hostile` fault)."""
        user = self.pop.user(index)
        return self._hostile_name(user.did) or user.display_name

    def _make_basic(self, index: int, day: int) -> dict:
        """profileViewBasic of user `index` on `day`."""
        user = self.pop.user(index)
        view: dict = {"did": user.did, "handle": self.pop.handle(index, day)}
        name = self.display_name(index)
        if name is not None:
            view["displayName"] = name
        avatar = self.pop.avatar(index)
        if avatar:
            view["avatar"] = avatar
        view["associated"] = {"activitySubscription": {"allowSubscriptions": "followers"}}
        view["viewer"] = {"muted": False, "blockedBy": False}
        view["labels"] = self._labels(index)
        view["createdAt"] = iso(user.created_us)
        return view

    def _labels(self, index: int) -> list:
        user = self.pop.user(index)
        if user.clock_id % 31:
            return []
        return [
            {
                "src": user.did,
                "uri": f"at://{user.did}/app.bsky.actor.profile/self",
                "cid": cid(self.pop.hasher, "profile", index),
                "val": "!no-unauthenticated",
                "cts": iso(user.created_us),
            }
        ]

    def profile(self, index: int, day: int) -> dict:
        """profileViewDetailed of an active user on `day`."""
        pop = self.pop
        user = pop.user(index)
        numbers = pop.profile(index, day)
        view: dict = {"did": user.did, "handle": numbers.handle}
        name = self.display_name(index)
        if name is not None:
            view["displayName"] = name
        description = user.description
        if description is not None or self.faults.data("hostile", user.did, user.did):
            view["description"] = self._hostile_name(user.did) or description
        avatar, banner = pop.avatar(index), pop.banner(index)
        if avatar:
            view["avatar"] = avatar
        if banner:
            view["banner"] = banner
        view["followersCount"] = numbers.followers
        view["followsCount"] = numbers.follows
        view["postsCount"] = numbers.posts_count
        view["associated"] = {
            "lists": 0,
            "feedgens": 0,
            "starterPacks": 1 if user.clock_id % 17 == 0 else 0,
            "labeler": False,
            "activitySubscription": {"allowSubscriptions": "followers"},
        }
        view["indexedAt"] = iso(max(user.created_us, pop.start_us - (user.clock_id % 90) * 86_400_000_000))
        view["createdAt"] = iso(user.created_us)
        view["viewer"] = {"muted": False, "blockedBy": False}
        view["labels"] = self._labels(index)
        if numbers.pinned is not None:
            view["pinnedPost"] = {"cid": pop.cid(numbers.pinned), "uri": pop.uri(numbers.pinned)}
        if index == 0:
            view["verification"] = {"verifications": [], "verifiedStatus": "none", "trustedVerifierStatus": "valid"}
        if self.faults.data("bad_counts", user.did, user.did):
            _spoil_counts(view, _PROFILE_COUNT_KEYS, self.faults.pick("bad-profile", user.did))
        return view

    # --- posts -------------------------------------------------------------------------------
    def _make_record(self, post: Post) -> dict:
        """The app.bsky.feed.post record of a post (createdAt exactly as its author wrote it)."""
        pop = self.pop
        user = pop.user(post.author)
        text, facets = self._text(post, user.lang)
        uri = pop.uri(post)
        if self.faults.data("hostile", uri, user.did):
            text = HOSTILE_TEXTS[self.faults.pick("hostile-text", uri) % len(HOSTILE_TEXTS)]()
            facets = []
        record: dict = {"$type": "app.bsky.feed.post", "createdAt": pop.created_at(post)}
        if post.media != NO_MEDIA:
            record["embed"] = self._embed_record(post)
        if facets:
            record["facets"] = facets
        if (post.d >> 20) & 0xF:  # most clients send langs; some never do
            record["langs"] = [user.lang]
        if post.kind != TOP:
            parent, root = pop.reply_refs(post)
            record["reply"] = {
                "parent": {"cid": pop.cid(parent), "uri": pop.uri(parent)},
                "root": {"cid": pop.cid(root), "uri": pop.uri(root)},
            }
        record["text"] = text
        return record

    def _text(self, post: Post, lang: str) -> tuple[str, list]:
        """The post's text and facets: one of a fixed pool per language, picked by the post's draw."""
        pool = _text_pool(lang)
        return pool[(post.a >> 32) % len(pool)]

    def _embed_record(self, post: Post) -> dict:
        hs = self.pop.hasher
        blob_cid = cid(hs, "blob", post.author, post.t, raw=True)
        ratio = {"height": 600 + post.d % 900, "width": 800 + (post.d >> 8) % 800}
        if post.media == IMAGES:
            blob = {"$type": "blob", "ref": {"$link": blob_cid}, "mimeType": "image/jpeg", "size": 50_000 + post.d % 900_000}
            return {"$type": "app.bsky.embed.images", "images": [{"alt": "", "aspectRatio": ratio, "image": blob}]}
        blob = {"$type": "blob", "ref": {"$link": blob_cid}, "mimeType": "video/mp4", "size": 500_000 + post.d % 9_000_000}
        return {"$type": "app.bsky.embed.video", "video": blob, "aspectRatio": ratio}

    def _embed_view(self, post: Post, did: str) -> dict:
        blob_cid = cid(self.pop.hasher, "blob", post.author, post.t, raw=True)
        ratio = {"height": 600 + post.d % 900, "width": 800 + (post.d >> 8) % 800}
        if post.media == IMAGES:
            image = {
                "thumb": f"https://cdn.bsky.app/img/feed_thumbnail/plain/{did}/{blob_cid}@jpeg",
                "fullsize": f"https://cdn.bsky.app/img/feed_fullsize/plain/{did}/{blob_cid}@jpeg",
                "alt": "",
                "aspectRatio": ratio,
            }
            return {"$type": "app.bsky.embed.images#view", "images": [image]}
        quoted = did.replace(":", "%3A")
        return {
            "$type": "app.bsky.embed.video#view",
            "cid": blob_cid,
            "playlist": f"https://video.bsky.app/watch/{quoted}/{blob_cid}/playlist.m3u8",
            "thumbnail": f"https://video.bsky.app/watch/{quoted}/{blob_cid}/thumbnail.jpg",
            "aspectRatio": ratio,
        }

    def post_view(self, post: Post, day: int, union: bool = False) -> dict:
        """postView of a post as of `day` (with `$type` when it sits in a union)."""
        pop = self.pop
        author = pop.user(post.author)
        uri = pop.uri(post)
        likes, replies, reposts, quotes, bookmarks = pop.engagement(post, day)
        view: dict = {"$type": POST_VIEW} if union else {}
        view["uri"] = uri
        view["cid"] = pop.cid(post)
        view["author"] = self.basic(post.author, day)
        view["record"] = self.record(post)
        if post.media != NO_MEDIA:
            view["embed"] = self._embed_view(post, author.did)
        view["bookmarkCount"] = bookmarks
        view["replyCount"] = replies
        view["repostCount"] = reposts
        view["likeCount"] = likes
        view["quoteCount"] = quotes
        view["indexedAt"] = iso(post.indexed_us)
        view["viewer"] = {"bookmarked": False, "threadMuted": False, "embeddingDisabled": False}
        view["labels"] = []
        if self.faults.data("bad_counts", uri, author.did):
            _spoil_counts(view, _COUNT_KEYS, self.faults.pick("bad-post", uri))
        return view

    def _ref_view(self, post: Post | Ghost, day: int, memo: dict | None = None) -> dict:
        """A reply's parent or root: postView when it can be shown, else notFoundPost.

        `memo` (id of the post -> view) lets one page render a thread's root once, however many
        of its items point at it; the JSON encoder writes a shared dict as often as it appears.
        """
        if memo is not None:
            view = memo.get(id(post))
            if view is None:
                view = memo[id(post)] = self._ref_view(post, day)
            return view
        pop = self.pop
        if isinstance(post, Post) and post.exists_at(pop.now_us(day)) and pop.status(post.author, day) == ACTIVE:
            return self.post_view(post, day, union=True)
        return {"$type": NOT_FOUND_POST, "uri": pop.uri(post), "notFound": True}

    def reply(self, post: Post, day: int, memo: dict | None = None) -> dict:
        """The feed item's `reply` (replyRef) of a reply post."""
        parent, root = self.pop.reply_refs(post)
        memo = {} if memo is None else memo
        view = {"root": self._ref_view(root, day, memo), "parent": self._ref_view(parent, day, memo)}
        if isinstance(parent, Post) and parent.kind == SELF_REPLY:
            view["grandparentAuthor"] = self.basic(parent.author, day)
        return view

    def feed_item(self, entry: Post | Repost, day: int, memo: dict | None = None) -> dict:
        """feedViewPost of a timeline entry: a post, or a repost with its reasonRepost."""
        if isinstance(entry, Repost):
            post = entry.target
            item: dict = {"post": self.post_view(post, day)}
            if post.kind != TOP:
                item["reply"] = self.reply(post, day, memo)
            by = self.pop.user(entry.by)
            repost_key = tid(entry.t, by.clock_id)
            item["reason"] = {
                "$type": REASON_REPOST,
                "by": self.basic(entry.by, day),
                "uri": f"at://{by.did}/app.bsky.feed.repost/{repost_key}",
                "cid": cid(self.pop.hasher, "repost", entry.by, entry.t),
                "indexedAt": iso(entry.t + 700_000),
            }
            return item
        item = {"post": self.post_view(entry, day)}
        if entry.kind != TOP:
            item["reply"] = self.reply(entry, day, memo)
        return item

    def feed(self, entries: list[Post | Repost], day: int) -> list[dict]:
        """feedViewPosts of a page, newest first as given (reply contexts rendered once)."""
        memo: dict = {}
        return [self.feed_item(entry, day, memo) for entry in entries]

    def pin_item(self, post: Post, day: int) -> dict:
        """The pinned post's feed item, first on the first page with includePins."""
        item = self.feed_item(post, day)
        item["reason"] = {"$type": REASON_PIN}
        return item


@cache
def _text_pool(lang: str) -> tuple[tuple[str, list], ...]:
    """2048 texts per language from its word list, some with an emoji, a hashtag or a link (with
    their facets). A pool, because texts cost more to build than everything else in a post."""
    vocabulary = words.POST_WORDS[lang]
    sep = "" if lang == "ja" else " "
    pool = []
    state = 0x9E3779B97F4A7C15
    for n in range(2048):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        count = 3 + (state >> 40) % 28
        chosen = []
        for _ in range(count):
            state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
            chosen.append(vocabulary[(state >> 33) % len(vocabulary)])
        text = sep.join(chosen)
        extra = n % 16
        facets: list = []
        if extra < 3:
            text += " " + words.EMOJI[n % len(words.EMOJI)]
        elif extra == 3:
            tag = words.HASHTAGS[n % len(words.HASHTAGS)]
            start = len(text.encode()) + 1
            text += " " + tag
            facets.append(_facet(start, start + len(tag), {"$type": "app.bsky.richtext.facet#tag", "tag": tag[1:]}))
        elif extra == 4:
            link = f"https://example.com/{n}"
            start = len(text.encode()) + 1
            text += " " + link
            facets.append(_facet(start, start + len(link), {"$type": "app.bsky.richtext.facet#link", "uri": link}))
        pool.append((text, facets))
    return tuple(pool)


def _facet(start: int, end: int, feature: dict) -> dict:
    return {"$type": "app.bsky.richtext.facet", "index": {"byteStart": start, "byteEnd": end}, "features": [feature]}


def _spoil_counts(view: dict, keys: tuple[str, ...], choice: int) -> None:
    """bad_counts: each count goes missing, negative, float or string (deterministically)."""
    for n, key in enumerate(keys):
        value = view.get(key, 0)
        how = (choice >> (4 * n)) % 4
        if how == 0:
            view.pop(key, None)
        elif how == 1:
            view[key] = -1 - value
        elif how == 2:
            view[key] = value + 0.5
        else:
            view[key] = str(value)
