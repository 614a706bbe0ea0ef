"""Prometheus metrics of the last run, written for node_exporter's textfile collector.

After each run the whole file is replaced (written to a temporary file in the same directory,
then renamed), so the collector never reads half a file. Every value describes the last run on
this machine, so they are gauges, not counters: a counter would have to keep growing across runs.
Per-shard series carry a `shard` label; run-wide totals are separate metric names, never a
`shard="total"` label value, so that sum() over a metric stays meaningful.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:  # only types: the metrics need none of the run's machinery
    from etl.run import RunOptions, RunReport

PREFIX = "dopplersky_etl_"
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"
# Every state gets a sample (1 for the current one, 0 for the others), so an alert on
# `...{status="failed"} == 1` never sees a series vanish and reappear.
RUN_STATES = ("completed", "failed", "interrupted", "no_users")
SHARD_STATES = (
    "completed",
    "partial",
    "failed",
    "interrupted",
    "busy",
    "stale",
    "not_started",
    "already_completed",
)
# (stats key of ShardReport, metric name after the prefix, help text)
USER_COUNTS = (
    ("users_selected", "users_selected", "Users the run selected (active or all, not skipped)."),
    ("users_written", "users_written", "Users that got a snapshot."),
    ("users_failed", "users_failed", "Users whose API work failed: no snapshot this run."),
    ("users_inactive", "users_inactive", "Users deleted, deactivated or taken down: no snapshot."),
    ("feed_skipped", "users_feed_skipped", "Written users that needed no author-feed read."),
    ("posts_merged", "posts_merged", "Posts inserted or updated."),
    ("posts_deleted", "posts_deleted", "Stored posts found deleted and removed."),
)


def run_state(report: RunReport) -> str:
    """This machine's verdict on the run: one of RUN_STATES."""
    if report.interrupted:
        return "interrupted"
    if report.exit_code != 0:
        return "failed"
    if report.registered_users == 0:
        return "no_users"
    return "completed"


def previous_success(path: Path) -> float | None:
    """The last success time recorded in an earlier file, carried over a failed run."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:
        return None  # a damaged file: start afresh rather than fail the run's bookkeeping
    return None


def build_registry(
    report: RunReport,
    *,
    run_options: RunOptions | None = None,
    now: float | None = None,
    last_success: float | None = None,
) -> CollectorRegistry:
    """A fresh registry holding the run's metrics."""
    now = time.time() if now is None else now
    registry = CollectorRegistry(auto_describe=False)

    def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, doc, list(labels), registry=registry)

    # --- the run as a whole ---------------------------------------------------------------------
    state = run_state(report)
    status = gauge("run_status", "This machine's outcome of the last run (1 = the current status).", ["status"])
    for name in RUN_STATES:
        status.labels(name).set(1 if name == state else 0)
    gauge("run_exit_code", "Exit status of the last `etl run` (0 ok, 1 failures, 130 interrupted).").set(
        report.exit_code
    )
    gauge("run_duration_seconds", "Wall time of the last run on this machine.").set(report.duration)
    gauge("last_run_timestamp_seconds", "When the last run ended (unix time).").set(now)
    success = now if state in ("completed", "no_users") else last_success
    gauge("last_success_timestamp_seconds", "When a run last ended without failures (unix time; 0 = never).").set(
        success or 0
    )
    info = gauge(
        "run_info",
        "The last run: its id, date, shard count, selection and the run row's status (value 1).",
        ["run_id", "run_date", "shard_count", "selection", "run_status"],
    )
    info.labels(
        "" if report.run_id is None else str(report.run_id),
        report.run_date.isoformat(),
        "" if run_options is None else str(run_options.shards),
        "" if run_options is None else run_options.selection,
        report.status or "",
    ).set(1)
    gauge("run_started_timestamp_seconds", "The run's clock (unix time); its UTC date is the snapshot date.").set(
        report.run_at.timestamp()
    )
    gauge("shards_here", "Shards this machine was to run.").set(len(report.shards_here))
    if report.registered_users is not None:
        gauge("registered_users", "Rows in the users table when the run started.").set(report.registered_users)

    reports = report.shard_reports.values()
    for key, name, doc in USER_COUNTS:
        gauge(name, doc + " Whole run on this machine.").set(sum(r.stats.get(key, 0) for r in reports))
    modes = gauge("users_by_mode", "Users by how their posts were read (feed, refresh, skip, ...).", ["mode"])
    failures = gauge("users_failed_by_reason", "Failed users by reason.", ["reason"])
    for metric, stats_key in ((modes, "modes"), (failures, "failures")):
        totals: dict[str, int] = {}
        for r in reports:
            for label, n in (r.stats.get(stats_key) or {}).items():
                totals[label] = totals.get(label, 0) + n
        for label, n in sorted(totals.items()):
            metric.labels(label).set(n)

    # --- the AppView ----------------------------------------------------------------------------
    api = report.api
    requests = gauge("api_requests", "AppView requests sent (attempts, retries included), by XRPC method.", ["method"])
    for method, n in sorted(api.requests.items()):
        requests.labels(method).set(n)
    gauge("api_retries", "AppView requests retried (429, 5xx, timeouts, resets).").set(api.retries)
    gauge("api_rate_limited", "AppView answers 429 Too Many Requests.").set(api.rate_limited)
    errors = gauge("api_errors", "Failed AppView attempts, by kind.", ["kind"])
    for kind, n in sorted(api.errors.items()):
        errors.labels(kind).set(n)
    gauge("api_throttle_seconds", "Time workers waited for the machine's request budget (summed).").set(
        api.throttle_seconds
    )
    gauge("api_received_bytes", "Bytes of AppView answers received.").set(api.bytes_received)

    # --- each shard -----------------------------------------------------------------------------
    _shard_metrics(report, gauge)
    return registry


def _shard_metrics(report: RunReport, gauge: Any) -> None:
    shard_status = gauge("shard_status", "Each shard's outcome on this machine (1 = the current status).", ["shard", "status"])
    counts = {key: gauge("shard_" + name, doc, ["shard"]) for key, name, doc in USER_COUNTS}
    requests = gauge("shard_api_requests", "AppView requests sent by the shard.", ["shard"])
    rate_limited = gauge("shard_api_rate_limited", "429 answers the shard received.", ["shard"])
    retries = gauge("shard_api_retries", "AppView requests the shard retried.", ["shard"])
    duration = gauge("shard_duration_seconds", "Wall time of the shard's worker.", ["shard"])

    statuses = {shard: "already_completed" for shard in report.skipped_completed}
    statuses.update({shard: r.status.replace(" ", "_") for shard, r in report.shard_reports.items()})
    for shard in sorted(statuses):
        for name in dict.fromkeys((*SHARD_STATES, statuses[shard])):
            shard_status.labels(str(shard), name).set(1 if name == statuses[shard] else 0)
    for shard, shard_report in sorted(report.shard_reports.items()):
        stats, label = shard_report.stats, str(shard)
        if not stats:
            continue  # the worker died or never started: it reported no counts to show
        for key, metric in counts.items():
            metric.labels(label).set(stats.get(key, 0))
        for key, metric in (("requests", requests), ("rate_limited", rate_limited), ("duration", duration)):
            metric.labels(label).set(stats.get(key, 0))
        # Older reports carry no per-shard retries; no sample beats a made-up zero.
        if "retries" in stats:
            retries.labels(label).set(stats["retries"])


def write_metrics(
    path: str | os.PathLike[str],
    report: RunReport,
    *,
    run_options: RunOptions | None = None,
    now: float | None = None,
) -> bool:
    """Replace the .prom file at `path` with the run's metrics; False (nothing written) for a dry run.

    A dry run is not a run: writing it would hide the last real run's outcome from alerts.
    """
    target = Path(path)
    if target.suffix != ".prom":
        raise ValueError(f"{target}: the textfile collector reads only files ending in .prom")
    if run_options is not None and run_options.dry_run:
        return False
    registry = build_registry(report, run_options=run_options, now=now, last_success=previous_success(target))
    # Temporary file in the same directory, then rename(2): atomic on one filesystem.
    write_to_textfile(str(target), registry)
    return True
