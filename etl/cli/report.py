"""`etl report`: one user's daily snapshots, their changes over 1, 7 and 30 days, and a chart."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from etl.cli.options import EtlError, common_options, open_database, settings_from_context

# Ten years of days: more than the table could sensibly show, and a bound on the query.
MAX_DAYS = 3660


@click.command()
@click.argument("user", metavar="USER")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    default=30,
    show_default=True,
    help="Calendar days to show, ending at --until.",
)
@click.option(
    "--until",
    "until",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    metavar="DATE",
    help="Last day shown (UTC date). Default: the user's latest snapshot.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table for a terminal; csv or json for programs.",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also draw a growth chart (followers, engagement per day) into this PNG (needs the charts extra).",
)
@common_options
def report(user: str, days: int, until: datetime | None, fmt: str, png: Path | None) -> None:
    """Show USER's daily snapshots with day-over-day, 7-day and 30-day changes.

    USER is a handle (with or without @) or a DID. Every calendar day of the period gets a row;
    a day without a snapshot has empty cells (null in JSON), and a change is empty when either
    of its two days has no snapshot. engagement = likes + replies + quotes + reposts.

    Example: etl report @alice.bsky.social --days 90 --format csv > alice.csv

    Example: etl report did:plc:z72i7hdynmk6r22z27h6tvur --png growth.png
    """
    from etl import report as reports

    if png is not None:
        from etl import charts

        try:
            charts.require_matplotlib()
        except charts.ChartsUnavailable as exc:
            raise EtlError(str(exc)) from None
    settings = settings_from_context()
    with open_database(settings, autocommit=True) as conn:
        account = reports.find_account(conn, user)
        if account is None:
            raise EtlError(f"no registered user matches '{user}'")
        last = until.date() if until else reports.latest_snapshot_date(conn, account.did)
        if last is None:
            raise EtlError(f"@{account.handle} has no snapshots yet (etl run writes one per day)")
        result = reports.build_report(conn, account, last, days)
    if fmt == "csv":
        click.echo(reports.render_csv(result), nl=False)
    elif fmt == "json":
        click.echo(reports.render_json(result), nl=False)
    else:
        click.echo(reports.render_table(result), nl=False)
    if png is not None:
        try:
            charts.render_growth_chart(result, png)
        except OSError as exc:
            raise EtlError(f"cannot write {png}: {exc.strerror or exc}") from None
        # stderr: stdout stays exactly the CSV or JSON a program reads.
        click.echo(f"Chart written to {png}.", err=True)
