"""What `etl run` prints: progress while it runs, and the summary at the end."""

from __future__ import annotations

import click

from etl.run import RunOptions, RunReport

COLUMNS = (
    ("shard", "shard"),
    ("status", "status"),
    ("selected", "users_selected"),
    ("written", "users_written"),
    ("failed", "users_failed"),
    ("inactive", "users_inactive"),
    ("no-feed", "feed_skipped"),
    ("requests", "requests"),
    ("429s", "rate_limited"),
    ("seconds", "duration"),
)


class RunDisplay:
    """Collects workers' progress messages and prints the run's summary."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet
        self.shards: dict[int, dict] = {}

    def progress(self, message: tuple) -> None:
        """A ("progress", shard, counts) message from a worker."""
        _, shard, counts = message
        self.shards[shard] = counts

    def summary(self, report: RunReport, options: RunOptions) -> None:
        """The table printed when the run ends (always, even with --quiet)."""
        if report.registered_users == 0:
            click.echo(
                "No users are registered yet, so there is nothing to snapshot. Register accounts with "
                "`bin/etl users add HANDLE_OR_DID...` or `bin/etl users import FILE` (one handle or DID "
                "per line, or CSV with a handle or did column), then run again."
            )
            return
        if options.dry_run:
            click.echo(f"Dry run for {report.run_date} ({options.shards} shards, {options.selection}): no API call, no write.")
            for shard, count in sorted(report.dry_counts.items()):
                click.echo(f"shard {shard:>3}: {count} users selected")
            click.echo(f"total: {sum(report.dry_counts.values())} users selected")
            return
        head = f"Run {report.run_id} of {report.run_date} ({options.shards} shards, {options.selection})"
        if not report.shard_reports:
            skipped = ", ".join(map(str, report.skipped_completed)) or "none"
            click.echo(f"{head}: nothing to do here; completed shards skipped: {skipped} (--force reruns them).")
            return
        rows = []
        for shard, shard_report in sorted(report.shard_reports.items()):
            stats = dict(shard_report.stats, shard=shard, status=shard_report.status)
            rows.append([_cell(stats.get(key)) for _, key in COLUMNS])
        totals = report.totals()
        totals.update(
            shard="total",
            status=report.status or "",
            requests=report.api.total_requests,
            rate_limited=report.api.rate_limited,
            duration=report.duration,
        )
        rows.append([_cell(totals.get(key)) for _, key in COLUMNS])
        widths = [max(len(title), *(len(row[i]) for row in rows)) for i, (title, _) in enumerate(COLUMNS)]
        click.echo(f"{head}: {report.status} in {report.duration:.1f}s with {report.workers} workers")
        click.echo("  ".join(title.ljust(w) for (title, _), w in zip(COLUMNS, widths, strict=True)).rstrip())
        for row in rows:
            click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        for shard, shard_report in sorted(report.shard_reports.items()):
            if shard_report.error:
                click.echo(f"shard {shard}: {shard_report.error}")
        if report.skipped_completed:
            click.echo(f"Skipped completed shards: {', '.join(map(str, report.skipped_completed))} (--force reruns them).")
        click.echo(f"Snapshots for {report.run_date}: {report.total_users} rows.")
        if report.totals()["users_selected"] == 0 and not options.select_all and not report.skipped_completed:
            click.echo(
                f"None of the {report.registered_users} registered users was active in the last "
                f"{options.active_days} days (a views row or last_active); --all selects every user."
            )

    @staticmethod
    def failure_line(report: RunReport) -> str:
        """The one-line reason for a non-zero exit."""
        bad = [s for s, r in sorted(report.shard_reports.items()) if r.status != "completed"]
        failed = report.totals()["users_failed"]
        return f"run {report.run_id}: shards {', '.join(map(str, bad))} did not complete ({failed} users failed)"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
