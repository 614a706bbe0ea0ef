"""One user's daily snapshots with their changes: the data behind `etl report`, and its renderings."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg

from etl.sqlfiles import queries

ETL = queries("etl")

# The snapshot columns, in the order every rendering shows them.
SNAPSHOT_COLUMNS = ("followers", "following", "posts", "likes", "replies", "quotes", "reposts")
PERIODS = (1, 7, 30)
# The terminal table: each tracked total followed by its changes. The CSV and JSON renderings
# carry every column report_days returns (the parts of engagement and their changes too).
TABLE_COLUMNS = (
    ("followers", "followers"),
    ("+1d", "followers_change_1d"),
    ("+7d", "followers_change_7d"),
    ("+30d", "followers_change_30d"),
    ("following", "following"),
    ("posts", "posts"),
    ("likes", "likes"),
    ("replies", "replies"),
    ("quotes", "quotes"),
    ("reposts", "reposts"),
    ("engagement", "engagement"),
    ("+1d", "engagement_change_1d"),
    ("+7d", "engagement_change_7d"),
    ("+30d", "engagement_change_30d"),
)
TABLE_LEGEND = (
    "engagement = likes + replies + quotes + reposts.\n"
    "+1d, +7d, +30d: change of the column to their left since 1, 7 and 30 days before;"
    " empty when either day has no snapshot."
)


@dataclass(frozen=True)
class Account:
    """A registered user as the report names it."""

    did: str
    handle: str
    display_name: str | None


@dataclass(frozen=True)
class Report:
    """A user's days from `first` to `last`, one row (a dict keyed by `columns`) per calendar day."""

    account: Account
    first: date
    last: date
    columns: tuple[str, ...]
    days: list[dict[str, Any]]

    @property
    def snapshot_days(self) -> int:
        """Days of the period that have a snapshot."""
        return sum(1 for day in self.days if has_snapshot(day))


def has_snapshot(day: dict[str, Any]) -> bool:
    """Whether a row of the series is a real snapshot rather than a gap."""
    return any(day[column] is not None for column in SNAPSHOT_COLUMNS)


def find_account(conn: psycopg.Connection, who: str) -> Account | None:
    """The registered user a handle (`@` optional) or a DID names, or None."""
    text = who.strip()
    row = conn.execute(ETL.report_find_user, {"did": text, "handle": text.removeprefix("@")}).fetchone()
    return Account(*row) if row else None


def latest_snapshot_date(conn: psycopg.Connection, did: str) -> date | None:
    """The date of the user's newest snapshot, or None."""
    return conn.execute(ETL.report_latest_date, {"did": did}).fetchone()[0]


def build_report(conn: psycopg.Connection, account: Account, last: date, days: int) -> Report:
    """The `days` calendar days ending at `last` (inclusive), gaps included."""
    first = last - timedelta(days=days - 1)
    cur = conn.execute(ETL.report_days, {"did": account.did, "first": first, "last": last})
    columns = tuple(col.name for col in cur.description)
    rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    return Report(account, first, last, columns, rows)


# --- renderings ----------------------------------------------------------------------------------


def printable(text: str | None) -> str:
    """A profile string made safe for one terminal line: control characters become spaces."""
    if not text:
        return ""
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    return " ".join(cleaned.split())


def _signed(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value:+d}" if value else "0"


def _plain(value: int | None) -> str:
    return "" if value is None else str(value)


def render_table(report: Report) -> str:
    """Aligned columns for a terminal: a title, one line per calendar day, a legend."""
    account = report.account
    title = "  ".join(part for part in ("@" + account.handle, account.did, printable(account.display_name)) if part)
    period = (
        f"{report.first} to {report.last}: {len(report.days)} days, "
        f"{report.snapshot_days} with a snapshot, {len(report.days) - report.snapshot_days} without"
    )
    header = ["date"] + [title_ for title_, _ in TABLE_COLUMNS]
    body = [
        [day["date"].isoformat()]
        + [(_signed if "_change_" in key else _plain)(day[key]) for _, key in TABLE_COLUMNS]
        for day in report.days
    ]
    widths = [max(len(header[i]), *(len(row[i]) for row in body)) if body else len(header[i]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # Dates left-aligned, numbers right-aligned so their digits line up.
        first, *rest = cells
        return "  ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]).rstrip()

    lines = [title, period, "", line(header)] + [line(row) for row in body] + ["", TABLE_LEGEND]
    return "\n".join(lines) + "\n"


def render_csv(report: Report) -> str:
    """A header and one row per day: ISO dates, integers, empty cells for days without data."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.columns)
    for day in report.days:
        writer.writerow(["" if day[c] is None else (day[c].isoformat() if c == "date" else day[c]) for c in report.columns])
    return out.getvalue()


def as_json(report: Report) -> dict[str, Any]:
    """The report as one JSON-able object: the user and its days (null for missing values)."""
    account = report.account
    return {
        "did": account.did,
        "handle": account.handle,
        "displayName": account.display_name,
        "days": [{c: (day[c].isoformat() if c == "date" else day[c]) for c in report.columns} for day in report.days],
    }


def render_json(report: Report) -> str:
    """as_json() serialised, indented for people, UTF-8 kept as is."""
    return json.dumps(as_json(report), indent=2, ensure_ascii=False) + "\n"
