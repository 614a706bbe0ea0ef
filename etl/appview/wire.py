"""Reading what came over the wire: JSON bodies, XRPC errors, Retry-After, redirects."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
from yarl import URL

from etl.appview.errors import Transient
from etl.ratelimit import http_date_to_unix
from etl.validate import clean_text

ERROR_TEXT_MAX = 300  # characters of a server's error message kept in exceptions and logs


def shown(value: object) -> str:
    """A short, log-safe rendering of a value that came from the server."""
    return repr(clean_text(value, 120) if isinstance(value, str) else value)[:140]


def snippet(body: bytes) -> str:
    """The start of a non-JSON body (an HTML error page), for a log line."""
    text = body[:ERROR_TEXT_MAX].decode("utf-8", "replace")
    return " ".join(text.split())[:120]


def loads(body: bytes) -> Any:
    """Parse JSON: orjson for speed, the stdlib for what orjson refuses but the AppView may send.

    Decoding is the largest single cost of a worker (a feed page is ~140 KB); orjson takes about
    a third less CPU. It rejects lone surrogate escapes (`"\\ud800"`) and NaN, which the stdlib
    accepts; those documents are rare and reach validate.py either way, which repairs them.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def decode(body: bytes, status: int, require: str | None) -> dict[str, Any]:
    """The JSON object of a success answer; a garbled one is Transient (worth retrying)."""
    try:
        data = loads(body)
    except (ValueError, RecursionError) as exc:  # HTML error page, truncated or invalid UTF-8
        raise Transient("bad_json", f"HTTP {status} with unreadable JSON ({snippet(body)!r})", status) from exc
    if not isinstance(data, dict):
        raise Transient("bad_json", f"HTTP {status} JSON is not an object", status)
    if require is not None and not isinstance(data.get(require), list):
        raise Transient("bad_json", f"HTTP {status} JSON without a {require!r} list", status)
    return data


def error_body(body: bytes) -> tuple[str | None, str | None]:
    """The XRPC error name and message of an error answer (message: a snippet if not JSON)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, snippet(body) or None
    if not isinstance(data, dict):
        return None, None
    error, message = data.get("error"), data.get("message")
    return (
        clean_text(error, ERROR_TEXT_MAX) if isinstance(error, str) else None,
        clean_text(message, ERROR_TEXT_MAX) if isinstance(message, str) else None,
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait per Retry-After (delta seconds or an HTTP date), or None."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = http_date_to_unix(value)
        if when is None:
            return None
        # Measured against the server's own Date when it sent one, so clock skew cancels out.
        server_now = http_date_to_unix(headers.get("Date"))
        seconds = when - (server_now if server_now is not None else time.time())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def redirect_host(url: URL, location: str | None) -> str | None:
    """The host a redirect points at (relative locations resolve against the request)."""
    if not location:
        return None
    try:
        target = URL(location)
        return (target if target.is_absolute() else url.join(target)).host
    except ValueError:
        return None
