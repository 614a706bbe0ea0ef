"""`etl schema apply | status | verify`: the versioned schema."""

from __future__ import annotations

import click

from etl import migrate
from etl.cli.options import EtlError, common_options, open_database, settings_from_context


@click.group()
def schema() -> None:
    """Versioned schema migrations (sql/migrations/NNNN_name.sql).

    Example: etl schema apply
    """


@schema.command()
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to wait for another applier to finish.",
)
@common_options
def apply(lock_timeout: float) -> None:
    """Apply pending migrations, each in one transaction with its history row.

    Safe to run from several machines at once: an advisory lock lets one apply while the others
    wait, then report nothing to do. A database where the reference README's SQL was run by hand
    is adopted (0001 recorded, nothing changed).

    Example: etl schema apply
    """
    settings = settings_from_context()
    with open_database(settings, autocommit=True) as conn:
        try:
            result = migrate.apply(
                conn,
                lock_timeout=lock_timeout,
                on_applied=lambda m, ms: click.echo(f"Applied {m.filename} ({ms:.0f} ms)"),
            )
        except migrate.MigrationError as exc:
            raise EtlError(str(exc)) from None
        if result.adopted:
            click.echo("Adopted the existing reference tables as 0001_reference_schema.sql (nothing changed).")
        state = migrate.read_state(conn)
    newest = max(state.applied, default=0)
    if result.applied:
        click.echo(f"Schema is at version {newest:04d}.")
    else:
        click.echo(f"Nothing to do: schema is up to date at version {newest:04d}.")


@schema.command()
@common_options
def status() -> None:
    """List applied and pending migrations.

    Example: etl schema status
    """
    settings = settings_from_context()
    with open_database(settings) as conn:
        state = _state(conn)
    by_version = {m.version: m for m in state.migrations}
    rows = []
    for version in sorted(set(by_version) | set(state.applied)):
        migration, row = by_version.get(version), state.applied.get(version)
        name = migration.filename if migration else f"{version:04d}_{row.name}.sql"
        if row is None:
            rows.append((name, "pending", "", ""))
            continue
        mark = "adopted" if row.adopted else "applied"
        if migration is None:
            mark = "applied, file missing"
        elif migration.checksum != row.checksum:
            mark = "CHANGED since applied"
        rows.append((name, mark, f"{row.applied_at:%Y-%m-%d %H:%M:%S %Z}", row.applied_by))
    width = max((len(r[0]) for r in rows), default=10)
    for name, mark, when, who in rows:
        click.echo(f"{name:<{width}}  {mark:<10}  {when}  {who}".rstrip())
    pending = len(state.pending)
    click.echo(f"{len(state.applied)} applied, {pending} pending.")
    problems = state.problems()
    if problems:
        raise EtlError("; ".join(problems))


@schema.command()
@common_options
def verify() -> None:
    """Check that every applied migration's file is unchanged and present; exit 1 if not.

    Example: etl schema verify
    """
    settings = settings_from_context()
    with open_database(settings) as conn:
        state = _state(conn)
    problems = state.problems()
    if problems:
        raise EtlError("; ".join(problems))
    pending = len(state.pending)
    note = f"; {pending} pending (run etl schema apply)" if pending else ""
    click.echo(f"Verified {len(state.applied)} applied migrations{note}.")


def _state(conn) -> migrate.SchemaState:
    try:
        return migrate.read_state(conn)
    except migrate.MigrationError as exc:
        raise EtlError(str(exc)) from None
