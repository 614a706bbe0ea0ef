"""Health checks: can we reach the database (with the schema up to date) and the AppView?"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from etl import db, migrate
from etl.config import Settings
from etl.sqlfiles import OPS

# Oldest PostgreSQL we support (DESIGN: 15+; MERGE ... RETURNING would need 17, so we avoid it).
MIN_SERVER_VERSION = 150000


@dataclass(frozen=True)
class Check:
    """One line of `etl health`."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name:<9} {'ok' if self.ok else 'FAIL':<4}  {self.detail}"


def check_database(settings: Settings) -> Check:
    """Connect, check the server version and that the schema is up to date."""
    try:
        conninfo = db.resolve_conninfo(settings)
        with db.connect(conninfo, settings) as conn:
            version, _ = conn.execute(OPS.server_version).fetchone()
            state = migrate.read_state(conn)
    except (db.DatabaseUnavailable, migrate.MigrationError) as exc:
        return Check("database", False, str(exc))
    where = f"PostgreSQL {version // 10000}.{version % 10000} at {db.describe(conninfo)}"
    if version < MIN_SERVER_VERSION:
        return Check("database", False, f"{where}: PostgreSQL 15 or later is required")
    problems = state.problems()
    if problems:
        return Check("database", False, f"{where}: " + "; ".join(problems))
    if state.pending:
        names = ", ".join(m.filename for m in state.pending)
        return Check("database", False, f"{where}: schema not up to date, pending {names} (run etl schema apply)")
    newest = max(state.applied, default=0)
    return Check("database", True, f"{where}, schema at {newest:04d} (up to date)")


async def _probe_appview(settings: Settings) -> Check:
    from etl.appview import AppView
    from etl.appview.errors import AccountUnavailable
    from etl.validate import is_did

    actor = settings.health_actor
    started = time.perf_counter()
    # A DID goes through getProfiles, the call the run makes most; a handle through getProfile,
    # because the client never sends a non-DID in a getProfiles batch.
    method = "getProfiles" if is_did(actor) else "getProfile"
    try:
        async with AppView(settings) as client:
            if method == "getProfiles":
                found = (await client.get_profiles([actor])).profiles
                if not found:
                    status = await client.account_status(actor)
                    raise AccountUnavailable(actor, status)
            else:
                await client.profile(actor)
    except AccountUnavailable as exc:
        return Check("appview", False, f"{settings.bluesky_base_url} answered, but the probe account {actor} is {exc.status}")
    except Exception as exc:  # any failure is the check's answer, reported on its line
        return Check("appview", False, f"{settings.bluesky_base_url}: {type(exc).__name__}: {exc}")
    elapsed = (time.perf_counter() - started) * 1000
    return Check("appview", True, f"{settings.bluesky_base_url} answered {method} for {actor} in {elapsed:.0f} ms")


def check_appview(settings: Settings) -> Check:
    """One lookup of the probe account, a single attempt with the usual timeouts."""
    return asyncio.run(_probe_appview(settings.replace(max_attempts=1, rate_limit=0)))


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order."""
    return [check_database(settings), check_appview(settings)]
