"""atproto string syntax checks (DID, handle, NSID, AT-URI, TID, record key, datetime, language).

The rules follow the protocol's own interop files in `shared/atproto/interop-test-files/syntax`;
`tests/sim/test_syntax.py` runs every valid and invalid line through them. The simulator uses them to
reject malformed request parameters like the real XRPC server does, and the lexicon converter uses
them as JSON-schema format checkers.
"""

from __future__ import annotations

import re
from datetime import datetime

_DID = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
_HANDLE = re.compile(
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)
_NSID = re.compile(
    r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"(\.[a-zA-Z]([a-zA-Z0-9]{0,62})?)$"
)
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_RKEY = re.compile(r"^[a-zA-Z0-9_~.:-]{1,512}$")
_ATURI = re.compile(
    r"^at://(?P<authority>[a-zA-Z0-9._:%-]+)"
    r"(/(?P<collection>[a-zA-Z0-9.-]+)(/(?P<rkey>[a-zA-Z0-9._~:@!$&%')(*+,;=-]+))?)?"
    r"(#(?P<fragment>/[a-zA-Z0-9._~:@!$&%')(*+,;=\-\[\]/\\]*))?$"
)
_DATETIME = re.compile(
    r"^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,20})?"
    r"(Z|([+-][0-2][0-9]:[0-5][0-9]))$"
)
# BCP-47 (RFC 5646) as the atproto TypeScript validator spells it.
_LANGUAGE = re.compile(
    r"^((en-GB-oed|i-ami|i-bnn|i-default|i-enochian|i-hak|i-klingon|i-lux|i-mingo|i-navajo|i-pwn|i-tao"
    r"|i-tay|i-tsu|sgn-BE-FR|sgn-BE-NL|sgn-CH-DE)|(art-lojban|cel-gaulish|no-bok|no-nyn|zh-guoyu|zh-hakka"
    r"|zh-min|zh-min-nan|zh-xiang))$"
    r"|^(([A-Za-z]{2,3}(-[A-Za-z]{3}(-[A-Za-z]{3}){0,2})?)|[A-Za-z]{4}|[A-Za-z]{5,8})(-[A-Za-z]{4})?"
    r"(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(-[0-9A-WY-Za-wy-z](-[A-Za-z0-9]{2,8})+)*(-[xX](-[A-Za-z0-9]{1,8})+)?$"
    r"|^[xX](-[A-Za-z0-9]{1,8})+$"
)
_URI = re.compile(r"^[a-z][a-z.+-]{0,80}:[!-~]+$")
_CID = re.compile(r"^[a-zA-Z0-9+=]{8,256}$")


def is_did(value: str) -> bool:
    """A DID per the atproto DID syntax (method lower case, at most 2 KB)."""
    return len(value) <= 2048 and _DID.match(value) is not None


def is_handle(value: str) -> bool:
    """A handle: a DNS name of two or more labels whose last label does not start with a digit."""
    return len(value) <= 253 and _HANDLE.match(value) is not None


def is_at_identifier(value: str) -> bool:
    """A handle or a DID, as the `actor` parameters take."""
    return is_did(value) if value.startswith("did:") else is_handle(value)


def is_nsid(value: str) -> bool:
    """A namespaced identifier like `app.bsky.feed.post`."""
    return len(value) <= 317 and _NSID.match(value) is not None


def is_tid(value: str) -> bool:
    """A 13-character base32-sortable timestamp identifier."""
    return _TID.match(value) is not None


def is_record_key(value: str) -> bool:
    """A record key: 1..512 URL-safe characters, never `.` or `..`."""
    return value not in (".", "..") and _RKEY.match(value) is not None


def is_at_uri(value: str) -> bool:
    """An AT-URI: `at://AUTHORITY[/COLLECTION[/RKEY]]`, authority a DID or a handle."""
    if len(value) > 8192:
        return False
    match = _ATURI.match(value)
    if match is None or not is_at_identifier(match["authority"]):
        return False
    collection = match["collection"]
    if collection is not None and not is_nsid(collection):
        return False
    rkey = match["rkey"]
    return rkey is None or is_record_key(rkey)


def parse_datetime(value: str) -> datetime | None:
    """The instant a valid atproto datetime names (timezone-aware), or None when it is not one."""
    if len(value) > 64 or _DATETIME.match(value) is None or value.endswith("-00:00"):
        return None
    date_part, _, rest = value.partition("T")
    clock = rest[:8]
    zone = "+00:00" if rest.endswith("Z") else rest[-6:]
    fraction = rest[8:-1] if rest.endswith("Z") else rest[8:-6]
    micros = (fraction[1:] + "000000")[:6] if fraction else "000000"
    try:
        return datetime.fromisoformat(f"{date_part}T{clock}.{micros}{zone}")
    except ValueError:
        return None


def is_datetime(value: str) -> bool:
    """An RFC 3339 datetime with a required zone, as the atproto datetime format demands."""
    return parse_datetime(value) is not None


def is_language(value: str) -> bool:
    """A BCP-47 language tag (the simple structural check the protocol uses)."""
    return _LANGUAGE.match(value) is not None


def is_uri(value: str) -> bool:
    """A URI with a scheme and no whitespace."""
    return len(value) <= 8192 and _URI.match(value) is not None


def is_cid(value: str) -> bool:
    """A CID in its string form (a loose structural check, as the atproto validators do)."""
    return _CID.match(value) is not None
