"""`etl run`: the daily job."""

from __future__ import annotations

import logging
from datetime import datetime

import click

from etl.cli.options import CannotStart, ConfigurationError, EtlError, common_options, settings_from_context

log = logging.getLogger("etl.cli.run")


def _timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or timestamp", param_hint="--as-of") from None


@click.command()
@click.option("--shards", type=click.IntRange(min=1), default=None, help="Shard count of the run (ETL_SHARDS).")
@click.option(
    "--shard-index",
    default=None,
    metavar="I|I-J|I,J,K",
    help="Shards to run here (0-based). Default: the scheduler's index variable, else all.",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (MAX_WORKERS; CPU count).")
@click.option("--all", "--simple-query", "select_all", is_flag=True, default=None, help="Every user not skipped, active or not.")
@click.option("--active-days", type=click.IntRange(min=1), default=None, help="Active = a view or activity this many days back.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N selected users (for trials).")
@click.option("--force", is_flag=True, help="Rerun shards of today's run that already completed.")
@click.option("--dry-run", is_flag=True, help="Select and count users per shard; no API call, no write.")
@click.option("--health-check", is_flag=True, help="Check the database and the AppView instead of running.")
@click.option(
    "--as-of",
    default=None,
    metavar="TIMESTAMP",
    help="Run as if started at this UTC time (replays, the simulator's clock). Default: now.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the final summary.")
@common_options
def run(shards, shard_index, workers, select_all, active_days, limit, force, dry_run, health_check, as_of, quiet) -> None:
    """Snapshot every selected user: profiles, recent posts' engagement, one row per user per day.

    Users are split into shards by a hash of their DID; this machine runs every shard, the ones
    --shard-index names, or the one its scheduler's index variable names (JOB_COMPLETION_INDEX,
    ...). Completed shards of today's run are skipped unless --force. Exit status: 0 every
    selected user written, 1 some users or shards failed, 2 usage or configuration error,
    3 could not start, 130 interrupted.

    Example: etl run --shards 8 --shard-index 0-3
    """
    if health_check:
        from etl.cli.health import report_health

        report_health()
        return
    from etl import run as runmod
    from etl.cli.progress import RunDisplay

    flags = {"shards": shards, "max_workers": workers, "active_days": active_days}
    if select_all:
        flags["selection"] = "all"
    settings = settings_from_context(flags, {"max_workers": "--workers", "selection": "--all"})
    options = runmod.RunOptions(
        shards=settings.shards,
        shard_index=shard_index,
        workers=settings.max_workers,
        select_all=settings.selection == "all",
        active_days=settings.active_days,
        limit=limit,
        force=force,
        dry_run=dry_run,
        as_of=_timestamp(as_of),
    )
    display = RunDisplay(quiet=quiet, every=settings.progress_seconds)
    try:
        report = runmod.execute(settings, options, on_progress=display.progress)
    except runmod.RunError as exc:
        display.close()
        if exc.exit_code == runmod.EXIT_USAGE:
            raise ConfigurationError(str(exc)) from None
        raise CannotStart(str(exc)) from None
    display.close()
    if settings.metrics_file:
        from etl.metrics import write_metrics

        try:
            write_metrics(settings.metrics_file, report, run_options=options)
        except (OSError, ValueError) as exc:
            log.error("cannot write metrics to %s: %s", settings.metrics_file, exc)
    display.summary(report, options)
    if report.exit_code != 0:
        if report.interrupted:
            raise click.exceptions.Exit(report.exit_code)
        raise EtlError(display.failure_line(report))
