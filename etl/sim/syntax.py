"""atproto string syntax checks for the simulator and the lexicon converter.

The identifier and datetime checks are the ETL's own (`etl.validate`, tested line by line against
the protocol's interop files); this module adds the formats only the lexicons need (TID,
language, URI, CID) and `is_at_identifier`. The simulator uses them to reject malformed request
parameters like the real XRPC server does, and the lexicon converter as JSON-schema format
checkers. `tests/sim/test_syntax_ids.py` runs every interop file line through them.
"""

from __future__ import annotations

import re

from etl.validate import is_at_uri, is_datetime, is_did, is_handle, is_nsid, is_record_key, parse_datetime

__all__ = [
    "is_at_identifier",
    "is_at_uri",
    "is_cid",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_language",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "is_uri",
    "parse_datetime",
]

_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")
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
_URI = re.compile(r"[a-z][a-z.+-]{0,80}:[!-~]+")
_CID = re.compile(r"[a-zA-Z0-9+=]{8,256}")


def is_at_identifier(value: str) -> bool:
    """A handle or a DID, as the `actor` parameters take."""
    return is_did(value) if value.startswith("did:") else is_handle(value)


def is_tid(value: str) -> bool:
    """A 13-character base32-sortable timestamp identifier."""
    return _TID.fullmatch(value) is not None


def is_language(value: str) -> bool:
    """A BCP-47 language tag (the simple structural check the protocol uses)."""
    return _LANGUAGE.fullmatch(value) is not None


def is_uri(value: str) -> bool:
    """A URI with a scheme and no whitespace."""
    return len(value) <= 8192 and _URI.fullmatch(value) is not None


def is_cid(value: str) -> bool:
    """A CID in its string form (a loose structural check, as the atproto validators do)."""
    return _CID.fullmatch(value) is not None
