"""`etl health`: is everything this job needs reachable?"""

from __future__ import annotations

import click

from etl.cli.options import common_options, settings_from_context


def report_health() -> None:
    """Print one line per check and exit 0 only when all pass (shared with `run --health-check`)."""
    from etl.health import run_checks

    settings = settings_from_context()
    checks = run_checks(settings)
    for check in checks:
        click.echo(check.line())
    if not all(check.ok for check in checks):
        raise click.exceptions.Exit(1)


@click.command()
@common_options
def health() -> None:
    """Check the database (reachable, schema up to date) and the AppView (one getProfiles call).

    Prints one line per check with the reason on failure; exits 0 only when all pass.

    Example: etl health
    """
    report_health()
