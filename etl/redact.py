"""Keeping database passwords out of every line the program prints or logs."""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# password=... in key=value strings (quoted or not) and user:password@ in URLs.
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def register_secret(secret: str | None) -> None:
    """Remember a secret so that `redact` removes it wherever it appears."""
    if secret and len(secret) >= 1:
        with _lock:
            _secrets.add(secret)


def registered() -> list[str]:
    """The registered secrets (handed to worker processes)."""
    with _lock:
        return sorted(_secrets)


def redact(text: str) -> str:
    """Text with every registered secret and every DSN password masked."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def conninfo_password(conninfo: str) -> str | None:
    """The password a connection string carries, if any."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(conninfo).get("password") or None
    except Exception:
        match = _URL_PASSWORD.search(conninfo)
        return match.group(2) if match else None


def mask_conninfo(conninfo: str) -> str:
    """A connection string safe to show: its password replaced by ***."""
    return redact(conninfo)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
