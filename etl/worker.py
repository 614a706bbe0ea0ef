"""One shard's work inside a worker process: select users, ask the AppView, stage, merge, snapshot."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from etl import db, redact
from etl.appview import AppView
from etl.appview.errors import AccountUnavailable, AppViewError, BatchFailed
from etl.config import Settings
from etl.cpu import BackendClock, peak_rss_kb
from etl.logs import set_run_id, setup_logging
from etl.migrate import LOCK_NAMESPACE
from etl.plan import Mode, UserContext, Window, choose_mode
from etl.shards import MAX_SHARDS
from etl.sqlfiles import OPS, queries
from etl.stage import StagedBatch, stage_batch
from etl.validate import Post, Profile

log = logging.getLogger("etl.worker")
ETL = queries("etl")

# Shard locks live in their own advisory-lock namespace, next to the schema lock's.
SHARD_LOCK_NAMESPACE = LOCK_NAMESPACE + 1
# A batch whose connection broke is retried once on a new connection: the API results are still
# in memory, and the transaction that broke left nothing behind.
BATCH_DB_ATTEMPTS = 2
# How long a worker keeps trying to reach the database again after a connection broke (a
# restart, a failover) before it gives up: a restart takes seconds, a failover a minute or so.
DB_RECONNECT_SECONDS = 60.0
# Batches whose API work is under way at once. A batch waits for its slowest user (a long
# history is read page after page); with other batches fetching meanwhile, and each written as
# soon as it is complete, the requests in flight stay at `concurrency` instead of draining to
# that one user. Memory stays bounded: at most this many batches.
BATCHES_IN_FLIGHT = 3


def shard_lock_key(run_id: int, shard: int) -> int:
    """The advisory lock key of one shard of one run (int32)."""
    return (run_id * MAX_SHARDS + shard) % 2**31


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker process needs, picklable (the spawn context starts from nothing)."""

    run_id: int
    shard: int
    shard_count: int
    run_at: datetime
    run_date: date
    select_all: bool
    active_since: datetime
    upto: str | None
    resume: bool
    conninfo: str
    settings: dict[str, Any]
    secrets: tuple[str, ...] = ()


@dataclass
class ShardStats:
    """What a worker sends back: small counts, never data."""

    shard: int
    status: str = "running"
    users_selected: int = 0
    users_written: int = 0
    users_failed: int = 0
    users_inactive: int = 0
    feed_skipped: int = 0
    posts_merged: int = 0
    posts_deleted: int = 0
    api: dict[str, Any] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    duration: float = 0.0
    host: str = ""
    pid: int = 0
    # CPU seconds: the whole worker process, JSON decoding, staging (Python side), and the
    # PostgreSQL backends serving the worker (None when the server is not on this machine).
    cpu: dict[str, float | None] = field(default_factory=dict)
    peak_rss_kb: int = 0

    def row(self, run_id: int, *, pid: int | None = None, host: str | None = None) -> dict[str, Any]:
        """Parameters of update_shard (pid and host: only that worker's running claim)."""
        api = self.api or {}
        return {
            "pid": pid,
            "host": host,
            "run_id": run_id,
            "shard": self.shard,
            "status": self.status,
            "users_selected": self.users_selected,
            "users_written": self.users_written,
            "users_failed": self.users_failed,
            "users_inactive": self.users_inactive,
            "feed_skipped": self.feed_skipped,
            "api_requests": sum(api.get("requests", {}).values()),
            "retries": api.get("retries", 0),
            "rate_limited": api.get("rate_limited", 0),
            "posts_merged": self.posts_merged,
            "posts_deleted": self.posts_deleted,
            "error": self.error,
        }


class ShardBusy(Exception):
    """Another process holds this shard's lock."""


class ShardLost(Exception):
    """The session holding the shard's lock broke and another process took the lock since."""


class Control:
    """The shard's control session: it holds the shard's advisory lock, selects the users and
    records progress. When its connection breaks (the database restarted, the session was
    killed) it reconnects, takes the lock again and repeats the statement (every statement on
    it is a read or an idempotent update); if another process took the lock meanwhile, the
    shard is theirs now and ShardLost stops this worker."""

    def __init__(self, worker: ShardWorker, conn: AsyncConnection, key: dict[str, int]):
        self.worker, self.conn, self.key = worker, conn, key
        self._reconnecting = asyncio.Lock()

    async def fetch(self, query: str, params: dict[str, Any] | None = None) -> list[tuple]:
        async def run(conn: AsyncConnection) -> list[tuple]:
            return await (await conn.execute(query, params)).fetchall()

        return await self._run(run)

    async def execute(self, query: str, params: dict[str, Any] | None = None) -> None:
        async def run(conn: AsyncConnection) -> None:
            await conn.execute(query, params)

        await self._run(run)

    async def finalize_run(self, run_id: int) -> None:
        """The run's state from its shards, computed under the run row's lock (see lock_run)."""

        async def run(conn: AsyncConnection) -> None:
            async with conn.transaction():
                await conn.execute(ETL.lock_run, {"run_id": run_id})
                await conn.execute(ETL.finalize_run, {"run_id": run_id})

        await self._run(run)

    async def _run(self, statement: Callable[[AsyncConnection], Any]) -> Any:
        conn = self.conn
        try:
            return await statement(conn)
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            log.warning("shard %d: the control connection broke (%s); reconnecting", self.worker.task.shard, db.error_line(exc))
            await self._reconnect(conn)
            return await statement(self.conn)

    async def _reconnect(self, broken: AsyncConnection) -> None:
        async with self._reconnecting:
            if self.conn is not broken:
                return  # another statement reconnected already
            await broken.close()
            self.conn = await self.worker._reconnect(autocommit=True)
            locked = (await (await self.conn.execute(ETL.try_shard_lock, self.key)).fetchone())[0]
            if not locked:
                raise ShardLost(
                    f"shard {self.worker.task.shard} was taken over by another process while this worker's "
                    "database connection was down; stopping here"
                )
            log.info("shard %d: reconnected and holding the shard again", self.worker.task.shard)

    async def close(self) -> None:
        await self.conn.close()  # also releases the advisory lock


@dataclass
class Fetched:
    """A batch's API results, validated, ready to stage."""

    selected: int
    staged: StagedBatch
    failed: dict[str, str]
    inactive: int
    modes: Counter


class ShardWorker:
    """Works one shard: batches of users, each fetched then written in one transaction."""

    def __init__(self, task: ShardTask, send: Callable[[tuple], None] | None = None):
        self.task = task
        self.settings = Settings(task.settings)
        self.window = Window(task.run_at, self.settings.post_window_days)
        self.stats = ShardStats(shard=task.shard, host=socket.gethostname(), pid=os.getpid())
        self.send = send or (lambda message: None)
        self.failure_reasons: Counter = Counter()
        self.api: AppView | None = None
        self.backends = BackendClock()
        self.stage_cpu = 0.0

    # --- connections ------------------------------------------------------------------------

    async def _connect(self, *, autocommit: bool) -> AsyncConnection:
        conn = await AsyncConnection.connect(
            self.task.conninfo,
            autocommit=autocommit,
            connect_timeout=self.settings.db_connect_timeout,
            application_name=f"dopplersky-etl shard {self.task.shard}",
        )
        self.backends.start(conn.info.backend_pid)
        await conn.execute(OPS.set_session, db.session_params(self.settings))
        if not autocommit:
            await conn.commit()
        return conn

    async def _work_connection(self, *, patient: bool = False) -> AsyncConnection:
        conn = await (self._reconnect(autocommit=False) if patient else self._connect(autocommit=False))
        await conn.execute(ETL.create_stage_tables)
        await conn.commit()
        return conn

    async def _reconnect(self, *, autocommit: bool) -> AsyncConnection:
        """A new connection after one broke, trying for DB_RECONNECT_SECONDS (a restart or a
        failover makes the database unreachable for a while)."""
        deadline = time.monotonic() + DB_RECONNECT_SECONDS
        delay = 0.2
        while True:
            try:
                return await self._connect(autocommit=autocommit)
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("shard %d: the database is unreachable (%s); trying again in %.1fs",
                            self.task.shard, db.error_line(exc), delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- the shard --------------------------------------------------------------------------

    async def run(self) -> ShardStats:
        """Lock, claim, work every batch, record the outcome; never leaves the row `running`."""
        started = time.monotonic()
        cpu_started = time.process_time()
        task = self.task
        key = {"namespace": SHARD_LOCK_NAMESPACE, "key": shard_lock_key(task.run_id, task.shard)}
        control = Control(self, await self._connect(autocommit=True), key)
        try:
            locked = (await control.fetch(ETL.try_shard_lock, key))[0][0]
            if not locked:
                raise ShardBusy(await self._holder(control))
            await control.execute(
                ETL.claim_shard, {"run_id": task.run_id, "shard": task.shard, "host": self.stats.host, "pid": self.stats.pid}
            )
            await control.execute(ETL.mark_run_in_progress, {"run_id": task.run_id})
            try:
                await self._work(control)
                self.stats.status = "completed" if self.stats.users_failed == 0 else "partial"
                if self.stats.users_failed:
                    self.stats.error = self._failure_summary()
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # go on to record the outcome
                self.stats.status = "interrupted"
                self.stats.error = "interrupted (SIGTERM or Ctrl-C) before the shard finished"
            except ShardLost:
                raise
            except Exception as exc:
                log.exception("shard %d failed", task.shard)
                self.stats.status = "failed"
                # One line naming the cause (a database error's statement text stays in the log).
                self.stats.error = db.error_line(exc)
            self.stats.duration = time.monotonic() - started
            self._collect_api()
            self._collect_cpu(cpu_started)
            await self._record(control)
            self.send(("progress", task.shard, {**self._progress(), "done": True}))
        except ShardBusy as busy:
            self.stats.status = "busy"
            self.stats.error = f"shard {task.shard} of run {task.run_id} is being worked by {busy}; not started here"
        except ShardLost as lost:
            self.stats.status = "lost"
            self.stats.error = str(lost)
            log.error("%s", lost)
        finally:
            await control.close()
        self.stats.duration = time.monotonic() - started
        return self.stats

    async def _record(self, control: Control) -> None:
        """Write the shard's outcome; if the database stays unreachable, say so and leave it to
        the parent (or the next run, which marks the shard stale)."""
        try:
            await control.execute(ETL.update_shard, self.stats.row(self.task.run_id))
            # The run's row follows its shards as each ends, so it is right even if the parent
            # that would record the end dies first.
            await control.finalize_run(self.task.run_id)
        except psycopg.OperationalError as exc:
            log.error("shard %d: could not record its outcome (%s): %s", self.task.shard, db.error_line(exc), self.stats.status)

    async def _holder(self, control: Control) -> str:
        rows = await control.fetch(ETL.run_shards, {"run_id": self.task.run_id})
        for shard, _status, host, pid, started_at, *_ in rows:
            if shard == self.task.shard:
                return f"pid {pid} on {host} (since {started_at:%H:%M:%S %Z})"
        return "another process"

    def _collect_api(self) -> None:
        if self.api is not None:
            self.stats.api = self.api.counters.as_dict()

    def _collect_cpu(self, cpu_started: float) -> None:
        self.stats.cpu = {
            "total": time.process_time() - cpu_started,
            "parse": (self.stats.api or {}).get("parse_seconds", 0.0),
            "stage": self.stage_cpu,
            "sql": self.backends.total(),
        }
        self.stats.peak_rss_kb = peak_rss_kb()

    def _failure_summary(self) -> str:
        top = ", ".join(f"{reason} ({n})" for reason, n in self.failure_reasons.most_common(3))
        return f"{self.stats.users_failed} users failed: {top}"

    async def _work(self, control: Control) -> None:
        """Keep up to BATCHES_IN_FLIGHT batches fetching; write each as soon as it is complete."""
        async with AppView(self.settings) as api:
            self.api = api
            work = await self._work_connection()
            fetching: set[asyncio.Task] = set()
            after: str | None = ""
            try:
                while True:
                    while after is not None and len(fetching) < BATCHES_IN_FLIGHT:
                        after, contexts = await self._next_batch(control, after)
                        if contexts:
                            fetching.add(asyncio.create_task(self._fetch(api, contexts)))
                    if not fetching:
                        break
                    done, fetching = await asyncio.wait(fetching, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        work = await self._write(work, task.result())
                        await self._heartbeat(control)
            finally:
                for task in fetching:  # fetches nobody will write: stop them
                    task.cancel()
                await asyncio.gather(*fetching, return_exceptions=True)
                self.backends.stop(work.info.backend_pid)
                await work.close()

    async def _heartbeat(self, control: Control) -> None:
        self._collect_api()
        await control.execute(ETL.update_shard, self.stats.row(self.task.run_id))
        self.send(("progress", self.task.shard, self._progress()))

    def _progress(self) -> dict[str, Any]:
        api = self.stats.api or {}
        return {
            "selected": self.stats.users_selected,
            "written": self.stats.users_written,
            "failed": self.stats.users_failed,
            "inactive": self.stats.users_inactive,
            "requests": sum(api.get("requests", {}).values()),
            "rate_limited": api.get("rate_limited", 0),
        }

    # --- selecting and fetching ---------------------------------------------------------------

    def _select_params(self, after: str) -> dict[str, Any]:
        task = self.task
        return {
            "after": after,
            "upto": task.upto,
            "shard_count": task.shard_count,
            "shard": task.shard,
            "select_all": task.select_all,
            "active_since": task.active_since,
            "resume": task.resume,
            "run_date": task.run_date,
            "limit": self.settings.batch_users,
            "offset": 0,
        }

    async def _next_batch(self, control: Control, after: str) -> tuple[str | None, list[UserContext]]:
        """The shard's next users after `after` (keyset paging), and the new position (None: done)."""
        rows = await control.fetch(ETL.select_users, self._select_params(after))
        if not rows:
            return None, []
        dids = [row[0] for row in rows]
        return dids[-1], await self._contexts(control, dids)

    async def _contexts(self, control: Control, dids: list[str]) -> list[UserContext]:
        rows = await control.fetch(ETL.batch_context, {"dids": dids, "window_start": self.window.start})
        return [
            UserContext(did, handle, backfilled, posts_count, window_read_on, tuple(uris))
            for did, handle, backfilled, posts_count, window_read_on, uris in rows
        ]

    async def _fetch(self, api: AppView, contexts: list[UserContext]) -> Fetched:
        """getProfiles, status probes, feeds and refreshes for one batch; failures stay per user."""
        failed: dict[str, str] = {}
        by_did = {ctx.did: ctx for ctx in contexts}
        try:
            answer = await api.get_profiles(list(by_did))
        except BatchFailed as exc:
            answer = exc.partial
            for did in exc.failed:
                failed[did] = f"getProfiles: {_reason(exc.errors[0])}"
        profiles: dict[str, Profile] = answer.profiles
        staged = StagedBatch()

        inactive = 0
        probes = await asyncio.gather(*(api.account_status(did) for did in answer.omitted), return_exceptions=True)
        for did, status in zip(answer.omitted, probes, strict=True):
            if isinstance(status, BaseException):
                _reraise_fatal(status)
                failed[did] = f"getProfile: {_reason(status)}"
            elif status == "active":
                failed[did] = "getProfiles left the account out but getProfile found it active"
            else:
                staged.statuses.append((did, status))
                inactive += 1

        for did, profile in profiles.items():
            if profile.unusable:
                # A 0 in place of a count the AppView garbled would chart as a real drop.
                failed[did] = f"getProfiles: unusable {', '.join(profile.unusable)} (missing, negative or not an integer)"

        modes: Counter = Counter()
        plans: dict[str, Mode] = {}
        for did, profile in profiles.items():
            if did in failed:
                continue
            mode = choose_mode(by_did[did], profile.posts, self.task.run_date, self.settings.full_read_days)
            plans[did] = mode
            modes[mode.value] += 1

        posts_by_user: dict[str, list[Post]] = {did: [] for did in profiles}
        reads: dict[str, tuple] = {}

        async def read_feed(did: str, mode: Mode) -> None:
            nonlocal inactive
            if mode is Mode.BACKFILL:
                result = await api.author_feed(did, None, max_posts=self.settings.backfill_max_posts)
            else:
                result = await api.author_feed(did, self.window.feed_since)
            if result.error is not None:
                failed[did] = f"getAuthorFeed: {_reason(result.error)}"
                return
            if result.stop == "repeated_cursor":
                # Following the cursor would loop, and the posts past it cannot be reached: the
                # sums would be short by an unknown amount.
                failed[did] = (
                    f"getAuthorFeed: the AppView repeated a cursor after {result.pages} pages; "
                    "the feed could not be read to the end"
                )
                return
            kept = self._keep(result.posts, mode)
            if reason := _unusable_posts(kept):
                failed[did] = f"getAuthorFeed: {reason}"
                return
            posts_by_user[did] = kept
            reads[did] = self._read_row(did, mode, result)

        async def guarded_feed(did: str, mode: Mode) -> None:
            try:
                await read_feed(did, mode)
            except AccountUnavailable:
                # Gone between getProfiles and the feed call. The feed says "Profile not found"
                # whatever the reason; getProfile tells deactivated, taken down and deleted apart.
                try:
                    status = await api.account_status(did)
                except AppViewError as exc:
                    failed[did] = f"getProfile: {_reason(exc)}"
                    return
                if status == "active":
                    failed[did] = "getAuthorFeed found no account but getProfile found it active"
                    return
                profiles.pop(did, None)
                staged.statuses.append((did, status))
                nonlocal inactive
                inactive += 1
            except AppViewError as exc:
                failed[did] = f"getAuthorFeed: {_reason(exc)}"

        feeds = [(did, mode) for did, mode in plans.items() if mode in (Mode.BACKFILL, Mode.WINDOW)]
        await asyncio.gather(*(guarded_feed(did, mode) for did, mode in feeds))

        refresh = [did for did, mode in plans.items() if mode is Mode.REFRESH]
        asked = [(uri, did) for did in refresh for uri in by_did[did].window_uris]
        if asked:
            try:
                found = await api.get_posts([uri for uri, _ in asked])
                unanswered: set[str] = set()
            except BatchFailed as exc:
                found, unanswered = exc.partial, set(exc.failed)
                for uri, did in asked:
                    if uri in unanswered:
                        failed[did] = f"getPosts: {_reason(exc.errors[0])}"
            reread = []
            for did in refresh:
                if did in failed:
                    continue
                uris = by_did[did].window_uris
                posts_by_user[did] = [found[uri] for uri in uris if uri in found]
                if reason := _unusable_posts(posts_by_user[did]):
                    failed[did] = f"getPosts: {reason}"
                    continue
                if len(posts_by_user[did]) < len(uris):
                    # A window post vanished while postsCount stayed the same: another post must
                    # have appeared. Read the window to find it (and to confirm the deletion).
                    reread.append(did)
                else:
                    staged.asked.extend((uri, did) for uri in uris)
            if reread:
                modes["reread"] += len(reread)
                await asyncio.gather(*(guarded_feed(did, Mode.WINDOW) for did in reread))

        for did, profile in profiles.items():
            if did in failed:
                continue
            staged.profiles.append(profile)
            staged.statuses.append((did, "active"))
            staged.posts.extend(posts_by_user.get(did, ()))
            if did in reads:
                staged.reads.append(reads[did])
        modes["skip"] = sum(1 for did, mode in plans.items() if mode is Mode.SKIP and did not in failed)
        if staged.asked:
            staged.asked = [(uri, did) for uri, did in staged.asked if did not in failed]
        return Fetched(len(contexts), staged, failed, inactive, modes)

    def _keep(self, posts: list[Post], mode: Mode) -> list[Post]:
        """A backfill keeps everything; a window read keeps the window (older posts keep their last counts)."""
        if mode is Mode.BACKFILL:
            return posts
        start = self.window.start
        return [post for post in posts if post.created_at >= start]

    def _read_row(self, did: str, mode: Mode, result) -> tuple:
        """(did, kind, window_start, complete) for stage_reads: which stored posts may be judged deleted.

        window_start None means the whole history was read.
        """
        if mode is Mode.BACKFILL:
            if result.stop == "end":
                return (did, "backfill", None, True)  # the whole history: no start
            # Capped: the window is still covered if the read went past its start.
            covered = any(post.created_at < self.window.feed_since for post in result.posts)
            return (did, "backfill", self.window.start, covered)
        return (did, "window", self.window.start, bool(result.complete))

    # --- writing ------------------------------------------------------------------------------

    async def _write(self, work: AsyncConnection, batch: Fetched) -> AsyncConnection:
        """Stage and merge one batch in one transaction; if the connection broke, retry once on a
        new one; if the database rolled it back (a deadlock: two shards' batches can lock each
        other's users when a handle moves between them), retry once at once. Any other database
        error (a statement timeout, a full disk) fails the shard: the transaction rolled back,
        and trying again would not change the outcome."""
        given = work
        for attempt in range(1, BATCH_DB_ATTEMPTS + 1):
            try:
                staging_started = time.process_time()
                try:
                    counts = await stage_batch(work, batch.staged, self.task.run_date)
                finally:
                    self.stage_cpu += time.process_time() - staging_started
                break
            except psycopg.OperationalError as exc:
                # SQLSTATE class 40: the server rolled the transaction back (40P01 deadlock).
                rolled_back = (exc.sqlstate or "").startswith("40") and not work.broken
                if attempt == BATCH_DB_ATTEMPTS or not (work.broken or rolled_back):
                    if work is not given:
                        await work.close()  # the caller closes only the one it gave
                    raise
                if rolled_back:
                    log.warning("batch rolled back by the database (%s); writing it again", db.error_line(exc))
                    continue
                log.warning("batch write failed (%s); retrying on a new connection", db.error_line(exc))
                self.backends.stop(work.info.backend_pid)
                await work.close()
                work = await self._work_connection(patient=True)
        stats = self.stats
        stats.users_selected += batch.selected
        stats.users_written += len(batch.staged.profiles)
        stats.users_inactive += batch.inactive
        stats.users_failed += len(batch.failed)
        stats.feed_skipped += batch.modes.get("skip", 0)
        stats.posts_merged += counts["posts_merged"]
        stats.posts_deleted += counts["posts_deleted"]
        for mode, n in batch.modes.items():
            stats.modes[mode] = stats.modes.get(mode, 0) + n
        for did, reason in batch.failed.items():
            log.warning("user %s failed: %s", did, reason)
            self.failure_reasons[reason.split(":", 1)[0]] += 1
        stats.failures = dict(self.failure_reasons)
        return work


def _unusable_posts(posts: list[Post]) -> str | None:
    """Why these posts cannot be summed into a snapshot (a count the AppView garbled), or None."""
    bad = [post for post in posts if post.unusable]
    if not bad:
        return None
    return f"unusable counts on {len(bad)} posts (e.g. {', '.join(bad[0].unusable)} of {bad[0].uri})"


def _reason(exc: BaseException) -> str:
    return redact.redact(str(exc) or type(exc).__name__)[:300]


def _reraise_fatal(exc: BaseException) -> None:
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
        raise exc
    if not isinstance(exc, (AppViewError, OSError, asyncio.TimeoutError)):
        raise exc


# --- the worker process ---------------------------------------------------------------------


def shard_process(task: ShardTask, channel) -> None:
    """Entry point of a worker process (spawn): run one shard, send its stats, exit."""
    settings = Settings(task.settings)
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    set_run_id(task.run_id)
    for secret in task.secrets:
        redact.register_secret(secret)

    def send(message: tuple) -> None:
        try:
            channel.send(message)
        except (BrokenPipeError, EOFError, OSError):
            pass  # the parent is gone; the shard row still records the outcome

    async def main() -> ShardStats:
        loop = asyncio.get_running_loop()
        job = asyncio.create_task(ShardWorker(task, send).run())

        def stop(signum: int) -> None:
            # The batch in flight rolls back; the shard is recorded as interrupted.
            log.warning("shard %d: %s received, stopping", task.shard, signal.Signals(signum).name)
            job.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop, signum)
        return await job

    try:
        stats = asyncio.run(main())
    except BaseException as exc:  # the parent learns of it from the pipe, not a traceback alone
        stats = ShardStats(shard=task.shard, status="failed", error=redact.redact(f"{type(exc).__name__}: {exc}"))
        send(("result", task.shard, asdict(stats)))
        raise
    send(("result", task.shard, asdict(stats)))
