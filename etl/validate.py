"""The boundary where bad data stops: atproto syntax checks, string hygiene and the row models.

Everything the AppView sends passes through here before it reaches the database. A bad item is
repaired (with a warning naming it) or dropped (with a warning naming it); the builders never
raise, so one odd post cannot fail its page or its batch. A count that cannot be repaired into
its true value (missing, negative, not an integer) is marked `unusable` on its model: the run
then writes no snapshot for that user rather than one with an invented number.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

log = logging.getLogger("etl.validate")

# --- column limits (reference schema; PostgreSQL VARCHAR(n) counts characters) ------------------
DID_MAX = 255  # users.did VARCHAR(255)
HANDLE_MAX = 255  # users.handle VARCHAR(255)
DISPLAY_NAME_MAX = 255  # users."displayName" VARCHAR(255)
# users.avatar is TEXT, but a CDN URL is ~150 characters; one longer than this is garbage,
# not a URL worth storing.
AVATAR_MAX = 2048
URI_MAX = 500  # posts.uri VARCHAR(500)
INT_MAX = 2_147_483_647  # PostgreSQL INTEGER, the type of every count column

INVALID_HANDLE = "handle.invalid"  # what the AppView itself shows for an unverifiable handle
POST_COLLECTION = "app.bsky.feed.post"

# A client clock may run a little fast; beyond this, createdAt is not believed (see post_time).
FUTURE_SLACK = timedelta(minutes=10)

# --- atproto identifier syntax (https://atproto.com/specs; interop-test-files/syntax) -----------
# Explicit ASCII classes throughout: \d and \w would admit non-ASCII digits and letters.
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_DID_MAX_SPEC = 2048  # the DID spec's own limit (the column limit is checked separately)
_HANDLE = re.compile(r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_HANDLE_MAX_SPEC = 253  # a DNS name
_NSID = re.compile(
    r"[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)
_NSID_MAX_SPEC = 317
_RECORD_KEY = re.compile(r"[a-zA-Z0-9_~.:-]{1,512}")
_AT_URI_CHARS = re.compile(r"[a-zA-Z0-9._~:@!$&')(*+,;=%/-]*")
_AT_URI_FRAGMENT = re.compile(r"/[a-zA-Z0-9._~:@!$&')(*+,;=%\[\]/-]*")
_AT_URI_MAX_SPEC = 8 * 1024
_DATETIME = re.compile(
    r"([0-9]{4})-([01][0-9])-([0-3][0-9])T([0-2][0-9]):([0-6][0-9]):([0-6][0-9])"
    r"(?:\.([0-9]{1,20}))?(Z|[+-][0-2][0-9]:[0-5][0-9])"
)
_DATETIME_MAX_SPEC = 64


def is_did(s: object) -> bool:
    """True for a syntactically valid DID (any method)."""
    return isinstance(s, str) and len(s) <= _DID_MAX_SPEC and _DID.fullmatch(s) is not None


def is_handle(s: object) -> bool:
    """True for a syntactically valid handle (`handle.invalid` included)."""
    return isinstance(s, str) and len(s) <= _HANDLE_MAX_SPEC and _HANDLE.fullmatch(s) is not None


def is_nsid(s: object) -> bool:
    """True for a syntactically valid NSID such as `app.bsky.feed.post`."""
    return isinstance(s, str) and len(s) <= _NSID_MAX_SPEC and _NSID.fullmatch(s) is not None


def is_record_key(s: object) -> bool:
    """True for a syntactically valid record key (`.` and `..` are not)."""
    return isinstance(s, str) and s not in (".", "..") and _RECORD_KEY.fullmatch(s) is not None


def is_at_uri(s: object) -> bool:
    """True for a valid AT-URI: at://authority[/collection[/rkey]][#/fragment]."""
    if not isinstance(s, str) or len(s) > _AT_URI_MAX_SPEC:
        return False
    base, hash_sign, fragment = s.partition("#")
    if hash_sign and ("#" in fragment or _AT_URI_FRAGMENT.fullmatch(fragment) is None):
        return False
    if _AT_URI_CHARS.fullmatch(base) is None:
        return False
    parts = base.split("/")
    if len(parts) < 3 or len(parts) > 5 or parts[0] != "at:" or parts[1] != "":
        return False
    authority = parts[2]
    if not (is_did(authority) if authority.startswith("did:") else is_handle(authority)):
        return False
    if len(parts) >= 4 and not is_nsid(parts[3]):
        return False
    return len(parts) < 5 or is_record_key(parts[4])


def parse_datetime(s: object) -> datetime | None:
    """An aware UTC datetime for a valid atproto datetime string, else None."""
    if not isinstance(s, str) or len(s) > _DATETIME_MAX_SPEC:
        return None
    return _parse_datetime(s)


# Every feed item's times are parsed twice (its place in the feed, then the post itself), and a
# post's times again each day it is refreshed: a small cache halves the cost.
@lru_cache(maxsize=8192)
def _parse_datetime(s: str) -> datetime | None:
    match = _DATETIME.fullmatch(s)
    # "-00:00" means "offset unknown" in RFC 3339, which ISO 8601 does not allow; years this
    # close to zero normalise to negative times in some implementations (the spec rejects them).
    if match is None or s.endswith("-00:00") or s.startswith("000"):
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    try:
        if zone == "Z":
            tz = UTC
        else:
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # month 13, second 61, offset >= 24h, year 10000 in UTC
        return None


def is_datetime(s: object) -> bool:
    """True for a valid atproto datetime (syntax and a real calendar date and time)."""
    return parse_datetime(s) is not None


# --- string and number hygiene -----------------------------------------------------------------
# JSON "\ud800" decodes to a lone surrogate, which UTF-8 cannot encode and PostgreSQL rejects;
# json.loads already joins valid pairs, so any surrogate left in a str is an invalid one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(s: str, max_chars: int) -> str:
    """`s` without NULs, with lone surrogates replaced by U+FFFD, cut to `max_chars` characters."""
    if "\x00" in s:
        s = s.replace("\x00", "")
    if not s.isascii():
        s = _SURROGATE.sub("\ufffd", s)
    return s if len(s) <= max_chars else s[:max_chars]


def clean_count(value: Any, field: str, item: str, unusable: list[str] | None = None) -> int:
    """A count fit for an INTEGER column; anything else becomes 0 (or is capped) with a warning.

    A value that is not a non-negative JSON integer (missing, negative, a float, a string) has
    no true count to store: its field name is appended to `unusable`, so that the caller can
    refuse to write a snapshot from it (the 0 is only a placeholder). A count above the INTEGER
    maximum is capped: the column cannot hold more.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            log.warning("%s: %s is negative (%d); using 0", item, field, value)
            _note(unusable, field)
            return 0
        if value > INT_MAX:
            log.warning("%s: %s is %d, above the INTEGER maximum; capping it", item, field, value)
            return INT_MAX
        return value
    if value is None:
        log.warning("%s: %s is missing; using 0", item, field)
    else:
        log.warning("%s: %s is not an integer (%s); using 0", item, field, _show(value))
    _note(unusable, field)
    return 0


def _note(unusable: list[str] | None, field: str) -> None:
    if unusable is not None:
        unusable.append(field)


def _show(value: Any, limit: int = 80) -> str:
    """A short, log-safe rendering of an odd value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _item_name(value: Any) -> str:
    """How a warning names an item whose identifier may itself be garbage."""
    return clean_text(value, 300) if isinstance(value, str) else _show(value)


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """One account as stored in `users` plus the counts for its snapshot."""

    did: str
    handle: str
    display_name: str | None
    avatar: str | None
    followers: int
    follows: int
    posts: int
    # Counts the AppView sent unusable (missing, negative, not integers), stored as 0 above: a
    # snapshot must not be written from this profile (see clean_count).
    unusable: tuple[str, ...] = dataclass_field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Post:
    """One of a user's own posts as stored in `posts`."""

    uri: str
    did: str
    created_at: datetime
    likes: int
    replies: int
    quotes: int
    reposts: int
    # Counts the AppView sent unusable, stored as 0 above (see clean_count and Profile.unusable).
    unusable: tuple[str, ...] = dataclass_field(default=(), compare=False)


def profile_from_view(view: Any) -> Profile | None:
    """A Profile from an `app.bsky.actor.defs#profileViewDetailed`, or None (logged) if unusable."""
    if not isinstance(view, dict):
        log.warning("profile dropped: not an object (%s)", _show(view))
        return None
    did = view.get("did")
    if not is_did(did):
        log.warning("profile dropped: invalid DID %s", _item_name(did))
        return None
    if len(did) > DID_MAX:
        log.warning("profile %s dropped: DID longer than %d characters", _item_name(did), DID_MAX)
        return None
    unusable: list[str] = []
    return Profile(
        did=did,
        handle=_handle(view.get("handle"), did),
        display_name=_optional_text(view.get("displayName"), DISPLAY_NAME_MAX, "displayName", did),
        avatar=_avatar(view.get("avatar"), did),
        followers=clean_count(view.get("followersCount"), "followersCount", did, unusable),
        follows=clean_count(view.get("followsCount"), "followsCount", did, unusable),
        posts=clean_count(view.get("postsCount"), "postsCount", did, unusable),
        unusable=tuple(unusable),
    )


def _handle(raw: Any, did: str) -> str:
    if raw == INVALID_HANDLE:
        return raw  # the AppView's own marker; the run decides what to keep
    if is_handle(raw):
        # Handles are case-insensitive and normalised to lower case by the spec; storing one
        # spelling keeps the UNIQUE column and change detection honest.
        return raw.lower()
    log.warning("profile %s: invalid handle %s; using %s", did, _item_name(raw), INVALID_HANDLE)
    return INVALID_HANDLE


def _optional_text(raw: Any, max_chars: int, field: str, item: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        log.warning("%s: %s is not a string (%s); dropping it", item, field, _show(raw))
        return None
    cleaned = clean_text(raw, max_chars)
    if cleaned != raw:
        log.warning("%s: %s had NULs, bad surrogates or more than %d characters; cleaned", item, field, max_chars)
    return cleaned


def _avatar(raw: Any, did: str) -> str | None:
    if isinstance(raw, str) and len(raw) > AVATAR_MAX:
        log.warning("%s: avatar is %d characters long; dropping it", did, len(raw))
        return None
    return _optional_text(raw, AVATAR_MAX, "avatar", did)


def post_time(created_raw: Any, indexed_raw: Any) -> datetime | None:
    """The creation time we store: createdAt, unless it does not parse or lies in the future."""
    return _post_time(parse_datetime(created_raw), parse_datetime(indexed_raw))


def _post_time(created: datetime | None, indexed: datetime | None) -> datetime | None:
    if created is None:
        return indexed
    # The AppView sorts a post by min(indexedAt, createdAt). A createdAt far ahead of indexedAt
    # (a wrong client clock) would keep the stored post "inside the engagement window" for as
    # long as the clock was wrong, while the feed places it at its indexedAt and stops returning
    # it once that leaves the window; the run would then take it for deleted. indexedAt is what
    # the AppView itself believes, so we store that instead.
    if indexed is not None and created - indexed > FUTURE_SLACK:
        return indexed
    return created


def at_uri_parts(uri: str) -> tuple[str, str, str] | None:
    """(authority, collection, rkey) of a valid record AT-URI without fragment, else None."""
    if "#" in uri or not is_at_uri(uri):
        return None
    parts = uri.split("/")
    if len(parts) != 5:
        return None
    return parts[2], parts[3], parts[4]


def post_from_view(view: Any) -> Post | None:
    """A Post from an `app.bsky.feed.defs#postView`, or None (logged) if unusable."""
    if not isinstance(view, dict):
        log.warning("post dropped: not an object (%s)", _show(view))
        return None
    uri = view.get("uri")
    name = _item_name(uri)
    if not isinstance(uri, str) or not is_at_uri(uri):
        log.warning("post dropped: invalid AT-URI %s", name)
        return None
    if len(uri) > URI_MAX:
        log.warning("post %s dropped: URI longer than %d characters", name[:URI_MAX] + "...", URI_MAX)
        return None
    parts = at_uri_parts(uri)
    if parts is None or parts[1] != POST_COLLECTION:
        log.warning("post dropped: %s is not a post record URI", name)
        return None
    author = view.get("author")
    author_did = author.get("did") if isinstance(author, dict) else None
    if parts[0] != author_did:
        log.warning("post %s dropped: its URI does not belong to its author %s", name, _item_name(author_did))
        return None
    record = view.get("record")
    created_raw = record.get("createdAt") if isinstance(record, dict) else None
    indexed_raw = view.get("indexedAt")
    created = parse_datetime(created_raw)
    created_at = _post_time(created, parse_datetime(indexed_raw))
    if created_at is None:
        log.warning(
            "post %s dropped: neither createdAt %s nor indexedAt %s is a datetime",
            name,
            _item_name(created_raw),
            _item_name(indexed_raw),
        )
        return None
    if created is None:
        log.warning("post %s: createdAt %s does not parse; using indexedAt", name, _item_name(created_raw))
    elif created_at != created:
        log.warning("post %s: createdAt %s is in the future; using indexedAt", name, created_raw)
    unusable: list[str] = []
    return Post(
        uri=uri,
        did=author_did,
        created_at=created_at,
        likes=clean_count(view.get("likeCount"), "likeCount", uri, unusable),
        replies=clean_count(view.get("replyCount"), "replyCount", uri, unusable),
        quotes=clean_count(view.get("quoteCount"), "quoteCount", uri, unusable),
        reposts=clean_count(view.get("repostCount"), "repostCount", uri, unusable),
        unusable=tuple(unusable),
    )


def sort_time(item: Any) -> datetime | None:
    """Where the AppView places a feed item: repost time for reposts, else min(indexedAt, createdAt)."""
    if not isinstance(item, dict):
        return None
    reason = item.get("reason")
    if isinstance(reason, dict) and reason.get("$type") == "app.bsky.feed.defs#reasonRepost":
        return parse_datetime(reason.get("indexedAt"))
    post = item.get("post")
    if not isinstance(post, dict):
        return None
    record = post.get("record")
    created = parse_datetime(record.get("createdAt")) if isinstance(record, dict) else None
    indexed = parse_datetime(post.get("indexedAt"))
    if created is None or indexed is None:
        return indexed or created
    return min(created, indexed)
