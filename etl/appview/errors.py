"""What the AppView client raises, and how an XRPC error maps to an account status."""

from __future__ import annotations

from typing import Any

ACTIVE = "active"
NOT_FOUND = "not_found"
DEACTIVATED = "deactivated"
TAKENDOWN = "takendown"


class AppViewError(Exception):
    """Base of every error the client raises."""


class XrpcError(AppViewError):
    """A non-retryable HTTP error answer (4xx, or a 5xx we do not retry)."""

    def __init__(self, status: int, error: str | None, message: str | None, method: str) -> None:
        self.status, self.error, self.message, self.method = status, error, message, method
        super().__init__(f"{method}: HTTP {status} {error or '(no error name)'}: {message or ''}".rstrip(": "))


class RedirectError(AppViewError):
    """The AppView answered with a redirect; we never follow one."""

    def __init__(self, status: int, host: str | None, method: str) -> None:
        self.status, self.host, self.method = status, host, method
        super().__init__(f"{method}: HTTP {status} redirect to host {host or '(none)'} not followed")


class ResponseTooLarge(AppViewError):
    """An answer exceeded max_response_bytes."""

    def __init__(self, method: str, limit: int, size: int | None) -> None:
        self.method, self.limit, self.size = method, limit, size
        shown = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(f"{method}: answer of {shown} exceeds the {limit}-byte limit")


class RetriesExhausted(AppViewError):
    """A transient failure persisted through every attempt; __cause__ is the last one."""

    def __init__(self, method: str, attempts: int, kind: str, detail: str, status: int | None) -> None:
        self.method, self.attempts, self.kind, self.status = method, attempts, kind, status
        super().__init__(f"{method}: {detail} (gave up after {attempts} attempts)")


class AccountUnavailable(AppViewError):
    """The actor of an author feed is not found, deactivated or taken down."""

    def __init__(self, did: str, status: str) -> None:
        self.did, self.status = did, status
        super().__init__(f"{did}: account {status}")


class BatchFailed(AppViewError):
    """Some calls of a batched lookup failed; `partial` holds what the others answered."""

    def __init__(self, method: str, failed: list[str], errors: list[AppViewError], partial: Any) -> None:
        self.method, self.failed, self.errors, self.partial = method, failed, errors, partial
        super().__init__(f"{method}: {len(failed)} items unanswered; first error: {errors[0]}")


class Transient(Exception):
    """An attempt failed in a way worth retrying (internal: callers see RetriesExhausted)."""

    def __init__(self, kind: str, detail: str, status: int | None = None, paused: float | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status = kind, detail, status
        self.paused = paused  # seconds every process of the machine now waits (after a 429)


def unavailable_status(error: XrpcError) -> str | None:
    """The account status a getProfile/getAuthorFeed 400 stands for, or None."""
    if error.status != 400:
        return None
    if error.error == "AccountDeactivated":
        return DEACTIVATED
    if error.error == "AccountTakedown":
        return TAKENDOWN
    if error.error == "InvalidRequest" and "not found" in (error.message or "").lower():
        return NOT_FOUND
    return None


def error_kind(error: AppViewError) -> str:
    """The counter key of a non-retryable failure."""
    if isinstance(error, XrpcError):
        return f"http_{error.status}" + (f":{error.error}" if error.error else "")
    if isinstance(error, RedirectError):
        return "redirect"
    if isinstance(error, ResponseTooLarge):
        return "too_large"
    return "other"
