"""What `etl run` prints: progress while it runs, and the summary at the end."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import click

from etl.run import RunOptions, RunReport

log = logging.getLogger("etl.progress")

# A terminal redraws its progress line at most this often.
REDRAW_SECONDS = 0.5

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


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class RunDisplay:
    """Workers' progress as one live line on a terminal, or a log line every few seconds; then the summary.

    Every worker sends ("progress", shard, counts) after each batch; the run sends one
    ("plan", None, {shard: users}) first, so the display knows the totals for its ETA.
    """

    def __init__(
        self,
        *,
        quiet: bool = False,
        every: float = 30.0,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock=time.monotonic,
    ):
        self.quiet = quiet
        self.every = every
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.started = clock()
        self.planned: dict[int, int] = {}
        self.shards: dict[int, dict] = {}
        self.finished: set[int] = set()
        self._last_shown = float("-inf")
        self._drawn = False

    def progress(self, message: tuple) -> None:
        """A message from the run ("plan") or a worker ("progress")."""
        kind, shard, data = message
        if kind == "plan":
            self.planned = dict(data)
            self.started = self.clock()
        elif kind == "progress":
            self.shards[shard] = data
            if data.get("done"):
                self.finished.add(shard)
        else:
            return
        self._maybe_show()

    def line(self) -> str:
        """users done of total, users/s, requests/s, ETA, failures, shards done."""
        done = sum(s.get("selected", 0) for s in self.shards.values())
        total = sum(self.planned.values())
        requests = sum(s.get("requests", 0) for s in self.shards.values())
        failed = sum(s.get("failed", 0) for s in self.shards.values())
        limited = sum(s.get("rate_limited", 0) for s in self.shards.values())
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = done / elapsed
        parts = [f"{done:,}/{total:,} users" + (f" ({100 * done / total:.0f}%)" if total else "")]
        parts.append(f"{rate:.1f} users/s")
        parts.append(f"{requests / elapsed:.1f} requests/s")
        if total and rate > 0 and done < total:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        parts.append(f"{failed} failed")
        if limited:
            parts.append(f"{limited} rate-limited")
        if self.planned:
            parts.append(f"{len(self.finished & set(self.planned))}/{len(self.planned)} shards done")
        return ", ".join(parts)

    def _maybe_show(self) -> None:
        if self.quiet:
            return
        now = self.clock()
        if self.live:
            if now - self._last_shown >= REDRAW_SECONDS:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
                self._drawn = True
                self._last_shown = now
        elif now - self._last_shown >= self.every:
            if self._last_shown != float("-inf") or self.shards:
                log.info("progress: %s", self.line())
            self._last_shown = now

    def close(self) -> None:
        """End the live line so that the summary starts on a clean one."""
        if self._drawn:
            self.stream.write("\r\x1b[K" + self.line() + "\n")
            self.stream.flush()
            self._drawn = False

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
