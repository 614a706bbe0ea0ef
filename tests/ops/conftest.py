"""Fixtures for the operations tests: a user with a history of snapshots (and gaps), the CLI."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest
from click.testing import CliRunner, Result

from etl.cli import cli

ALICE_DID = "did:plc:alice2222222222222222222"
ALICE_HANDLE = "alice.test"
ALICE_NAME = "Alice Example"
# The history: every day from FIRST_DAY to LAST_DAY except MISSING_DAYS (a lone gap, a two-day
# gap, and one day that a 30-day change further on looks back at).
FIRST_DAY = date(2026, 1, 1)
LAST_DAY = date(2026, 2, 15)
MISSING_DAYS = frozenset({date(2026, 1, 10), date(2026, 2, 3), date(2026, 2, 10), date(2026, 2, 11)})


def snapshot_values(day: date) -> dict[str, int]:
    """Counts of ALICE's snapshot on a day: growing, with a dip so changes go negative too."""
    i = (day - FIRST_DAY).days
    dip = 40 if day == date(2026, 2, 5) else 0
    return {
        "followers": 1000 + 7 * i + (i * i) % 5 - dip,
        "following": 300 + i % 3,
        "posts": 50 + i,
        "likes": 2000 + 25 * i - dip,
        "replies": 100 + 3 * i,
        "quotes": 10 + i // 2,
        "reposts": 400 + 5 * i,
    }


def history_days() -> list[date]:
    """The days ALICE has a snapshot."""
    span = (LAST_DAY - FIRST_DAY).days + 1
    return [FIRST_DAY + timedelta(days=n) for n in range(span) if FIRST_DAY + timedelta(days=n) not in MISSING_DAYS]


@pytest.fixture
def alice(postgresql: psycopg.Connection) -> str:
    """ALICE registered with her history of snapshots, and a second user with one snapshot."""
    with postgresql.cursor() as cur:
        cur.execute(
            'INSERT INTO users (did, handle, "displayName") VALUES (%s, %s, %s), (%s, %s, %s)',
            (ALICE_DID, ALICE_HANDLE, ALICE_NAME, "did:plc:bob33333333333333333333", "bob.test", None),
        )
        for day in history_days():
            values = snapshot_values(day)
            cur.execute(
                "INSERT INTO snapshots (did, date, followers, following, posts, likes, replies, quotes, reposts) "
                "VALUES (%(did)s, %(date)s, %(followers)s, %(following)s, %(posts)s, %(likes)s, %(replies)s, "
                "%(quotes)s, %(reposts)s)",
                {"did": ALICE_DID, "date": day, **values},
            )
        # Another user's snapshots on the same days must never leak into ALICE's report.
        cur.execute(
            "INSERT INTO snapshots (did, date, followers) VALUES (%s, %s, 5), (%s, %s, 6)",
            ("did:plc:bob33333333333333333333", date(2026, 2, 10), "did:plc:bob33333333333333333333", LAST_DAY),
        )
    postgresql.commit()
    return ALICE_DID


@pytest.fixture
def etl_cli(dsn: str, clean_environ, monkeypatch: pytest.MonkeyPatch):
    """Invoke `etl ...` against this test's database."""
    monkeypatch.setenv("DATABASE_URL", dsn)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args))

    return invoke
