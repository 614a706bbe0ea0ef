"""Registering users: resolve handles or DIDs through the AppView, insert the ones that exist."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import psycopg

from etl.appview import AppView
from etl.appview.errors import AccountUnavailable, AppViewError, BatchFailed
from etl.config import Settings
from etl.sqlfiles import queries
from etl.validate import INVALID_HANDLE, Profile, is_did, is_handle

ETL = queries("etl")
PROFILE_URL = "https://bsky.app/profile/"


@dataclass
class Registration:
    """One entry of `users add/import` and what became of it."""

    entry: str
    outcome: str  # added, exists, malformed, not_found, deactivated, takendown, error
    did: str | None = None
    handle: str | None = None
    detail: str = ""
    profile: Profile | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("added", "exists", "resolved")


def normalise(entry: str) -> str:
    """`@alice.bsky.social`, a profile URL, or a DID, as the actor to ask for."""
    actor = entry.strip()
    if actor.startswith(PROFILE_URL):
        actor = actor[len(PROFILE_URL) :].split("/", 1)[0]
    actor = actor.removeprefix("@")
    return actor if actor.startswith("did:") else actor.lower()


def read_entries(path: Path) -> list[str]:
    """Entries of a file: one per line, or a CSV whose header has a `handle` or `did` column."""
    text = path.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if len(header) > 1 or header[0] in ("handle", "did"):
        column = "did" if "did" in header else "handle" if "handle" in header else None
        if column is None:
            raise ValueError(f"{path}: a CSV file needs a 'handle' or 'did' column (found: {', '.join(header)})")
        reader = csv.DictReader(io.StringIO("\n".join(lines)), fieldnames=header)
        next(reader)
        entries = []
        for row in reader:
            value = (row.get("did") or "").strip() if column == "did" else ""
            entries.append(value or (row.get("handle") or "").strip())
        return [e for e in entries if e]
    return [line.strip() for line in lines]


async def resolve(settings: Settings, entries: list[str]) -> list[Registration]:
    """Ask the AppView about each entry: its profile, or why there is none."""
    results: list[Registration] = []
    dids: list[str] = []
    handles: list[str] = []
    for entry in entries:
        actor = normalise(entry)
        if is_did(actor):
            dids.append(actor)
        elif is_handle(actor) and actor != INVALID_HANDLE:
            handles.append(actor)
        else:
            results.append(Registration(entry, "malformed", detail="not a handle or a DID"))
            continue
        results.append(Registration(entry, "pending", did=actor if actor.startswith("did:") else None, handle=actor))
    async with AppView(settings) as api:
        found: dict[str, Profile] = {}
        omitted: list[str] = []
        failed: dict[str, str] = {}
        if dids:
            try:
                answer = await api.get_profiles(dids)
            except BatchFailed as exc:
                answer = exc.partial
                failed.update({did: str(exc.errors[0]) for did in exc.failed})
            found.update(answer.profiles)
            omitted = answer.omitted

        async def by_handle(handle: str) -> None:
            try:
                found[handle] = await api.profile(handle)
            except AccountUnavailable as gone:
                failed[handle] = gone.status
            except AppViewError as exc:
                failed[handle] = f"error: {exc}"

        async def status_of(did: str) -> None:
            try:
                failed[did] = await api.account_status(did)
            except AppViewError as exc:
                failed[did] = f"error: {exc}"

        await asyncio.gather(*(by_handle(h) for h in dict.fromkeys(handles)), *(status_of(d) for d in omitted))
    for reg in results:
        if reg.outcome != "pending":
            continue
        key = reg.did or reg.handle
        profile = found.get(key)
        if profile is not None:
            reg.outcome, reg.profile, reg.did = "resolved", profile, profile.did
            reg.handle = profile.handle if profile.handle != INVALID_HANDLE else profile.did
            continue
        why = failed.get(key, "not_found")
        if why.startswith("error: "):
            reg.outcome, reg.detail = "error", why[len("error: ") :]
        elif why == "active":
            reg.outcome, reg.detail = "error", "getProfiles left the account out but getProfile found it"
        else:
            reg.outcome = why if why in ("not_found", "deactivated", "takendown") else "error"
            reg.detail = "" if reg.outcome != "error" else why
    return results


def register(conn: psycopg.Connection, registrations: list[Registration]) -> None:
    """Insert the resolved users (one transaction); existing users are left as they are."""
    with conn.transaction():
        for reg in registrations:
            if reg.outcome != "resolved" or reg.profile is None:
                continue
            profile = reg.profile
            params = {
                "did": profile.did,
                "handle": reg.handle,
                "display_name": profile.display_name,
                "avatar": profile.avatar,
            }
            conn.execute(ETL.free_handle_for_new_user, params)
            inserted = conn.execute(ETL.insert_user, params).fetchone()
            reg.outcome = "added" if inserted else "exists"
