"""Async client for the Bluesky AppView: profiles, account status, author feeds and posts.

Every request waits for the machine's rate limiter, runs under the process's concurrency cap,
is retried when the failure is transient (429, 500/502/503/504, timeouts, resets, unreadable
JSON) and fails at once when it is not (other 4xx, redirects, oversized answers). Answers go
through etl.validate, so one bad item never fails a page.
"""

from etl.appview.client import BATCH, FEED_LIMIT, USER_AGENT, AppView
from etl.appview.errors import (
    ACTIVE,
    DEACTIVATED,
    NOT_FOUND,
    TAKENDOWN,
    AccountUnavailable,
    AppViewError,
    BatchFailed,
    RedirectError,
    ResponseTooLarge,
    RetriesExhausted,
    XrpcError,
)
from etl.appview.results import Counters, FeedResult, ProfilesResult

__all__ = [
    "ACTIVE",
    "BATCH",
    "DEACTIVATED",
    "FEED_LIMIT",
    "NOT_FOUND",
    "TAKENDOWN",
    "USER_AGENT",
    "AccountUnavailable",
    "AppView",
    "AppViewError",
    "BatchFailed",
    "Counters",
    "FeedResult",
    "ProfilesResult",
    "RedirectError",
    "ResponseTooLarge",
    "RetriesExhausted",
    "XrpcError",
]
