"""The daily run in the parent process: open the run, hand shards to workers, record the outcome."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from etl import db, migrate, redact
from etl.appview.results import Counters
from etl.config import Settings
from etl.logs import set_run_id
from etl.pool import ShardPool
from etl.shards import MAX_SHARDS, parse_shard_index, scheduler_shards, shard_of
from etl.sqlfiles import queries
from etl.worker import SHARD_LOCK_NAMESPACE, ShardStats, ShardTask, shard_lock_key, shard_process

log = logging.getLogger("etl.run")
ETL = queries("etl")

# A run waits this long for a `schema apply` in progress before it gives up.
SCHEMA_WAIT_SECONDS = 600.0
# After the workers, how long the parent waits for a database that went away (a restart, a
# failover) to record the run's outcome.
RECONNECT_SECONDS = 60.0
# Paging size when only counting selected users (--dry-run, --limit).
COUNT_PAGE = 10_000

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANNOT_START, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class RunError(Exception):
    """The run cannot start; `exit_code` says whether it is usage (2) or reachability (3)."""

    def __init__(self, message: str, exit_code: int = EXIT_CANNOT_START):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunOptions:
    """What `etl run` was asked to do (flags already merged with settings)."""

    shards: int
    shard_index: str | None = None
    workers: int | None = None
    select_all: bool = False
    active_days: int = 7
    limit: int | None = None
    force: bool = False
    dry_run: bool = False
    as_of: datetime | None = None

    @property
    def selection(self) -> str:
        """How the run names its selection in snapshot_logs (part of the run's identity)."""
        name = "all" if self.select_all else f"active:{self.active_days}"
        return name + (f":limit={self.limit}" if self.limit else "")


@dataclass
class ShardReport:
    """One shard's line of the summary."""

    shard: int
    status: str
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunReport:
    """What happened; the CLI prints it and derives the exit status from it."""

    run_date: date
    run_at: datetime
    shards_here: list[int]
    run_id: int | None = None
    status: str | None = None
    total_users: int = 0
    shard_reports: dict[int, ShardReport] = field(default_factory=dict)
    skipped_completed: list[int] = field(default_factory=list)
    dry_counts: dict[int, int] = field(default_factory=dict)
    api: Counters = field(default_factory=Counters)
    interrupted: bool = False
    duration: float = 0.0
    workers: int = 0
    workers_started: bool = False
    registered_users: int | None = None
    recorded: bool = True  # False: the database was gone when the outcome was to be written

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if not self.recorded or any(r.status != "completed" for r in self.shard_reports.values()):
            return EXIT_FAILED
        return EXIT_OK

    def totals(self) -> dict[str, int]:
        keys = ("users_selected", "users_written", "users_failed", "users_inactive", "feed_skipped")
        return {k: sum(r.stats.get(k, 0) for r in self.shard_reports.values()) for k in keys}


def run_moment(as_of: datetime | None) -> datetime:
    """The run's one clock read (UTC): its date is the snapshot date, even past midnight."""
    moment = as_of or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def shards_to_run(options: RunOptions, environ: dict[str, str] | None = None) -> tuple[list[int], str]:
    """The shards this machine runs and why: --shard-index, a scheduler variable, or all."""
    if not 1 <= options.shards <= MAX_SHARDS:
        raise RunError(f"--shards must be between 1 and {MAX_SHARDS}", EXIT_USAGE)
    try:
        if options.shard_index is not None:
            return parse_shard_index(options.shard_index, options.shards), "--shard-index"
        found = scheduler_shards(options.shards, environ)
    except ValueError as exc:
        raise RunError(str(exc), EXIT_USAGE) from None
    if found:
        return found
    return list(range(options.shards)), "all shards"


def _select_params(options: RunOptions, run_at: datetime, **overrides: Any) -> dict[str, Any]:
    params = {
        "after": "",
        "upto": None,
        "shard_count": options.shards,
        "shard": 0,
        "select_all": options.select_all,
        "active_since": run_at - timedelta(days=options.active_days),
        "resume": False,
        "run_date": run_at.date(),
        "limit": COUNT_PAGE,
        "offset": 0,
    }
    params.update(overrides)
    return params


def limit_boundary(conn: psycopg.Connection, options: RunOptions, run_at: datetime) -> str | None:
    """The last DID --limit admits: the N-th selected user over all shards (None: no limit)."""
    if not options.limit:
        return None
    params = _select_params(options, run_at, shard_count=1, shard=0, limit=1, offset=options.limit - 1)
    row = conn.execute(ETL.select_users, params).fetchone()
    return row[0] if row else None


def count_selected(
    conn: psycopg.Connection,
    options: RunOptions,
    run_at: datetime,
    upto: str | None,
    *,
    resume: bool = False,
) -> dict[int, int]:
    """Selected users per shard, in one pass over the selection (shards computed here, in Python)."""
    counts = dict.fromkeys(range(options.shards), 0)
    after = ""
    while True:
        params = _select_params(options, run_at, shard_count=1, shard=0, upto=upto, after=after, resume=resume)
        rows = conn.execute(ETL.select_users, params).fetchall()
        for (did,) in rows:
            counts[shard_of(did, options.shards)] += 1
        if len(rows) < COUNT_PAGE:
            return counts
        after = rows[-1][0]


def check_schema(conn: psycopg.Connection) -> None:
    """The schema must be up to date; waits for a `schema apply` in progress (shared lock)."""
    try:
        migrate.acquire_lock(conn, timeout=SCHEMA_WAIT_SECONDS, what="schema apply to finish", shared=True)
    except migrate.MigrationError as exc:
        raise RunError(str(exc)) from None
    try:
        state = migrate.read_state(conn)
    finally:
        migrate.release_lock(conn, shared=True)
    problems = state.problems()
    if problems:
        raise RunError("the schema does not match this code: " + "; ".join(problems))
    if state.pending:
        names = ", ".join(m.filename for m in state.pending)
        raise RunError(f"the schema is not up to date (pending {names}); run etl schema apply first")


def mark_stale_shards(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """Shards recorded as running whose worker is gone (its lock is free): mark them stale."""
    stale = []
    for run_id, shard, host, pid, heartbeat in conn.execute(ETL.running_shards).fetchall():
        key = {"namespace": SHARD_LOCK_NAMESPACE, "key": shard_lock_key(run_id, shard)}
        if not conn.execute(ETL.try_shard_lock, key).fetchone()[0]:
            continue  # a live process holds it: really running
        try:
            when = f"{heartbeat:%Y-%m-%d %H:%M:%S %Z}" if heartbeat else "never"
            error = f"worker pid {pid} on {host} stopped without finishing (last heartbeat {when})"
            conn.execute(
                ETL.fail_shard,
                {"run_id": run_id, "shard": shard, "status": "stale", "error": error, "pid": pid, "host": host},
            )
            stale.append((run_id, shard))
            log.warning("run %d shard %d: %s; marked stale", run_id, shard, error)
        finally:
            conn.execute(ETL.release_shard_lock, key)
    for (run_id,) in conn.execute(ETL.unfinished_runs).fetchall():
        finalize_run(conn, run_id)
    return stale


def finalize_run(conn: psycopg.Connection, run_id: int) -> tuple:
    """Give a run the state its shards say (completed, failed or in_progress); (status, total, failed)."""
    with conn.transaction():
        conn.execute(ETL.lock_run, {"run_id": run_id})
        return conn.execute(ETL.finalize_run, {"run_id": run_id}).fetchone()


def execute(
    settings: Settings,
    options: RunOptions,
    *,
    on_progress: Callable[[tuple], None] | None = None,
    install_signals: bool = True,
) -> RunReport:
    """The whole run on this machine; never raises for a shard's failure (see the report)."""
    started = time.monotonic()
    set_run_id(None)  # until this run has its id, log lines must not carry a previous run's
    run_at = run_moment(options.as_of)
    shards_here, _reason = shards_to_run(options)
    report = RunReport(run_date=run_at.date(), run_at=run_at, shards_here=shards_here)
    try:
        conninfo = db.resolve_conninfo(settings)
        conn = db.connect(conninfo, settings, autocommit=True)
    except db.DatabaseUnavailable as exc:
        raise RunError(str(exc)) from None
    try:
        return _execute(conn, conninfo, settings, options, report, started, on_progress, install_signals)
    except psycopg.Error as exc:
        if report.workers_started:
            raise
        raise RunError(f"the database failed before the run started: {db.error_line(exc)}") from None


def _execute(conn, conninfo, settings, options, report, started, on_progress, install_signals) -> RunReport:
    run_at = report.run_at
    shards_here = report.shards_here
    with conn:
        check_schema(conn)
        mark_stale_shards(conn)
        report.registered_users = conn.execute(ETL.count_users).fetchone()[0]
        if report.registered_users == 0:
            report.duration = time.monotonic() - started
            return report  # nothing to run: the CLI explains how to register users
        upto = limit_boundary(conn, options, run_at)
        if options.dry_run:
            counts = count_selected(conn, options, run_at, upto)
            report.dry_counts = {shard: counts[shard] for shard in shards_here}
            report.duration = time.monotonic() - started
            return report
        run_id, _status, _started = conn.execute(
            ETL.open_run,
            {"run_date": report.run_date, "shard_count": options.shards, "selection": options.selection},
        ).fetchone()
        report.run_id = run_id
        set_run_id(run_id)
        previous = {row[0]: row[1] for row in conn.execute(ETL.run_shards, {"run_id": run_id}).fetchall()}
        todo = [s for s in shards_here if options.force or previous.get(s) != "completed"]
        report.skipped_completed = [s for s in shards_here if s not in todo]
        for shard in report.skipped_completed:
            log.info("shard %d of run %d is already completed; skipping it (--force reruns it)", shard, run_id)
        tasks = [
            (
                shard,
                ShardTask(
                    run_id=run_id,
                    shard=shard,
                    shard_count=options.shards,
                    run_at=run_at,
                    run_date=report.run_date,
                    select_all=options.select_all,
                    active_since=run_at - timedelta(days=options.active_days),
                    upto=upto,
                    resume=not options.force,
                    conninfo=conninfo,
                    settings=dict(settings.values),
                    secrets=tuple(redact.registered()),
                ),
            )
            for shard in todo
        ]
        workers = min(options.workers or settings.max_workers or os.cpu_count() or 1, max(1, len(tasks)))
        report.workers = workers
        if tasks and on_progress is not None:
            # The users each shard will work (resume: those without today's snapshot), for the
            # progress display's totals and ETA.
            counts = count_selected(conn, options, run_at, upto, resume=not options.force)
            on_progress(("plan", None, {shard: counts[shard] for shard in todo}))
        if tasks:
            report.workers_started = True
            log.info(
                "run %d (%s, %d shards, %s): %d shards here with %d workers",
                run_id, report.run_date, options.shards, options.selection, len(tasks), workers,
            )  # fmt: skip
            outcomes = _run_pool(report, tasks, workers, on_progress, install_signals)
        else:
            outcomes = {}
        _record_outcomes(conn, conninfo, settings, report, outcomes)
    report.duration = time.monotonic() - started
    return report


def _record_outcomes(conn, conninfo: str, settings: Settings, report: RunReport, outcomes: dict) -> None:
    """Write what the workers could not (deaths, outcomes they could not record) and the run's
    status. The connection opened at the start may have died while the workers ran (the
    database restarted): then on a new one, waiting for the database to come back."""
    try:
        _write_outcomes(conn, report, outcomes)
        return
    except psycopg.OperationalError as exc:
        if not conn.broken:
            raise
        log.warning("the database connection broke while the workers ran (%s); reconnecting", db.error_line(exc))
    try:
        fresh = db.connect_patiently(conninfo, settings, autocommit=True, seconds=RECONNECT_SECONDS)
    except db.DatabaseUnavailable as exc:
        report.recorded = False
        log.error("could not record the run's outcome (%s); the next run marks its unfinished shards stale", exc)
        return
    with fresh:
        _write_outcomes(fresh, report, outcomes)


def _write_outcomes(conn: psycopg.Connection, report: RunReport, outcomes: dict) -> None:
    host = socket.gethostname()
    for shard, outcome in sorted(outcomes.items()):
        shard_report = report.shard_reports[shard]
        if outcome.result is not None:
            if shard_report.status in ("busy", "lost"):
                continue  # another process's claim: not ours to write
            params = ShardStats(**outcome.result).row(report.run_id, pid=outcome.pid, host=host)
            if conn.execute(ETL.update_shard, params).rowcount:
                log.warning("shard %d: recorded the outcome its worker could not write", shard)
        elif outcome.started:
            conn.execute(
                ETL.fail_shard,
                {"run_id": report.run_id, "shard": shard, "status": shard_report.status,
                 "error": shard_report.error, "pid": outcome.pid, "host": host},
            )  # fmt: skip
    row = finalize_run(conn, report.run_id)
    report.status, report.total_users = row[0], row[1]


def _run_pool(report: RunReport, tasks, workers: int, on_progress, install_signals: bool) -> dict:
    pool = ShardPool(workers, shard_process, on_message=on_progress)
    previous_handlers = {}
    if install_signals:

        def stop(signum, frame):
            if not pool.stopping:
                log.warning("%s received: stopping the workers (their batches roll back)", signal.Signals(signum).name)
            pool.request_stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, stop)
    try:
        outcomes = pool.run(tasks)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    report.interrupted = pool.stopping
    for shard, outcome in sorted(outcomes.items()):
        if outcome.result is not None:
            stats = ShardStats(**outcome.result)
            if stats.api:
                report.api.merge(stats.api)
            shard_stats = {k: v for k, v in outcome.result.items() if k not in ("api", "error", "status")}
            shard_stats["requests"] = sum(stats.api.get("requests", {}).values()) if stats.api else 0
            shard_stats["rate_limited"] = stats.api.get("rate_limited", 0) if stats.api else 0
            shard_stats["retries"] = stats.api.get("retries", 0) if stats.api else 0
            report.shard_reports[shard] = ShardReport(shard, stats.status, shard_stats, stats.error)
            continue
        if not outcome.started:
            report.shard_reports[shard] = ShardReport(shard, "not started", error="the run was stopped first")
            continue
        status = "interrupted" if pool.stopping else "failed"
        error = outcome.died or "worker ended without a result"
        log.error("shard %d: %s", shard, error)
        report.shard_reports[shard] = ShardReport(shard, status, error=error)
    return outcomes
