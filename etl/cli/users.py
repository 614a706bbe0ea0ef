"""`etl users add | import | list`: the accounts the daily run follows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from etl.cli.options import EtlError, common_options, open_database, settings_from_context

# Entries resolved and inserted per round: bounded memory for big import files.
IMPORT_CHUNK = 1000


def _register(entries: list[str]) -> None:
    from etl.users import register, resolve

    settings = settings_from_context()
    counts: dict[str, int] = {}
    problems = 0
    with open_database(settings) as conn:
        for start in range(0, len(entries), IMPORT_CHUNK):
            registrations = asyncio.run(resolve(settings, entries[start : start + IMPORT_CHUNK]))
            register(conn, registrations)
            for reg in registrations:
                counts[reg.outcome] = counts.get(reg.outcome, 0) + 1
                if reg.outcome == "added":
                    click.echo(f"added     {reg.handle}  {reg.did}")
                elif reg.outcome == "exists":
                    click.echo(f"exists    {reg.handle}  {reg.did}")
                else:
                    problems += 1
                    detail = f": {reg.detail}" if reg.detail else ""
                    click.echo(f"{reg.outcome:<9} {reg.entry}{detail}", err=True)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    click.echo(f"{len(entries)} entries: {summary}.")
    if problems:
        raise EtlError(f"{problems} of {len(entries)} entries were not registered")


@click.group()
def users() -> None:
    """Register the accounts the daily run snapshots.

    Example: etl users add alice.bsky.social did:plc:z72i7hdynmk6r22z27h6tvur
    """


@users.command()
@click.argument("entries", nargs=-1, required=True, metavar="HANDLE_OR_DID...")
@common_options
def add(entries: tuple[str, ...]) -> None:
    """Resolve handles or DIDs through the AppView and register them.

    Unknown or malformed entries are reported and not inserted (exit 1); existing users are left
    as they are.

    Example: etl users add alice.bsky.social @bob.example.com
    """
    _register(list(entries))


@users.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@common_options
def import_(file: Path) -> None:
    """Register every entry of FILE: one handle or DID per line, or CSV with a handle or did column.

    Example: etl users import signups.csv
    """
    from etl.users import read_entries

    try:
        entries = read_entries(file)
    except ValueError as exc:
        raise EtlError(str(exc)) from None
    if not entries:
        raise EtlError(f"{file} has no entries")
    _register(entries)


@users.command(name="list")
@click.option("--match", "pattern", default=None, help="Only handles matching this (SQL ILIKE, e.g. '%.bsky.social').")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@common_options
def list_(pattern: str | None, limit: int) -> None:
    """List registered users with their account status and last snapshot.

    Example: etl users list --match 'alice%'
    """
    from etl.users import ETL

    settings = settings_from_context()
    with open_database(settings) as conn:
        total = conn.execute(ETL.count_users).fetchone()[0]
        rows = conn.execute(ETL.list_users, {"pattern": pattern, "exact": pattern, "limit": limit}).fetchall()
    for did, handle, name, status, skip, last, followers in rows:
        flags = " [skipped]" if skip else ""
        snap = f"last snapshot {last}, {followers} followers" if last else "no snapshot yet"
        click.echo(f"{handle}  {did}  {name or ''}  {status or 'unchecked'}{flags}  {snap}".replace("    ", "  "))
    click.echo(f"{len(rows)} of {total} users shown.")
