"""`etl db`: the embedded PostgreSQL used when no database is configured."""

from __future__ import annotations

import click

from etl import db as dbmod
from etl import embedded, redact
from etl.cli.options import CannotStart, common_options, settings_from_context


@click.group()
def db() -> None:
    """The database this configuration uses (the embedded one when none is set).

    Example: etl db url
    """


@db.command()
@common_options
def url() -> None:
    """Print the connection string (password masked), starting the embedded server if needed.

    The embedded server needs no password, so its URL works as is: psql "$(etl db url)"

    Example: etl db url
    """
    settings = settings_from_context()
    try:
        conninfo = dbmod.resolve_conninfo(settings)
    except dbmod.DatabaseUnavailable as exc:
        raise CannotStart(str(exc)) from None
    click.echo(redact.mask_conninfo(conninfo))


@db.command()
@common_options
def stop() -> None:
    """Stop the embedded PostgreSQL of ETL_DATA_DIR (its data stays).

    Example: etl db stop
    """
    settings = settings_from_context()
    where = embedded.pgdata(settings.data_dir)
    if embedded.stop(settings.data_dir):
        click.echo(f"Stopped the embedded PostgreSQL in {where}.")
    else:
        click.echo(f"The embedded PostgreSQL in {where} is not running.")


@db.command()
@common_options
def status() -> None:
    """Say which database is configured, and whether the embedded one runs.

    Example: etl db status
    """
    settings = settings_from_context()
    configured = dbmod.configured_conninfo(settings)
    if configured:
        click.echo(f"Configured database: {dbmod.describe(configured)}")
        return
    pid = embedded.running(settings.data_dir)
    where = embedded.pgdata(settings.data_dir)
    state = f"running (pid {pid})" if pid else "not running (started on demand)"
    click.echo(f"Embedded PostgreSQL in {where}: {state}")
