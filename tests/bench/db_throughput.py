"""Database throughput: the project's stage-and-merge against one statement per row.

Posts: a batch of N posts, half updates of stored posts and half new, into a posts table that
already holds N. The project's path is etl.stage.stage_batch (binary COPY into a temporary table,
one INSERT ... SELECT ... ON CONFLICT); the baselines run the same upsert once per row, or through
psycopg's executemany. Snapshots: the snapshot upsert for M users, sums over their posts computed
in SQL, against per-row and executemany upserts whose sums the caller computed. Every
measurement starts from an identical clone of a prepared database.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from etl import db
from etl.config import load_settings
from etl.sqlfiles import OPS, queries
from etl.stage import PROFILE_TYPES, StagedBatch, copy_rows, stage_batch
from etl.validate import Post, Profile
from tests.bench.common import (
    BENCH_DIR,
    Table,
    admin_conninfo,
    bench_database,
    database_conninfo,
    median_of,
    server_label,
)

BENCH = queries("bench")
ETL_SQL = queries("etl")
USER_TYPES = ["text", "text"]
POST_TYPES = ["text", "text", "int4", "int4", "int4", "int4", "timestamptz"]
RUN_DATE = date(2026, 12, 3)


def _did(i: int) -> str:
    return f"did:plc:bench{i:019d}"


def _post(i: int, users: int, bump: int = 0) -> Post:
    did = _did(i % users)
    created = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=i)
    return Post(f"at://{did}/app.bsky.feed.post/{i:013d}", did, created, 10 + bump + i % 7, 2 + bump, 1, 3 + bump)


def _prepare(conninfo: str, users: int, posts: int) -> None:
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(BENCH.copy_users) as copy:
            copy.set_types(USER_TYPES)
            for i in range(users):
                copy.write_row((_did(i), f"u{i}.bench.example"))
        with cur.copy(BENCH.copy_posts) as copy:
            copy.set_types(POST_TYPES)
            for i in range(posts):
                p = _post(i, users)
                copy.write_row((p.uri, p.did, p.likes, p.replies, p.quotes, p.reposts, p.created_at))
        conn.commit()
        cur.execute(BENCH.analyze_all)
        conn.commit()


class Clones:
    """Fresh copies of a prepared database, one per measurement."""

    def __init__(self, template_conninfo: str):
        self.admin = admin_conninfo()
        self.template = psycopg.conninfo.conninfo_to_dict(template_conninfo)["dbname"]
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        name = f"{self.template}_c{self.count}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(self.template))
            )
        return database_conninfo(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for n in range(1, self.count + 1):
                name = f"{self.template}_c{n}"
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _release(conninfo: str) -> None:
    """Close every session of a template so that it can be cloned."""
    with psycopg.connect(conninfo, autocommit=True):
        pass


def _session() -> dict[str, str]:
    """The session settings every path gets: the ones the ETL's workers use."""
    return db.session_params(load_settings(environ={}, cwd=BENCH_DIR))


def _timed_stage(conninfo: str, batch: StagedBatch) -> float:
    async def go() -> float:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await conn.execute(OPS.set_session, _session())
        await conn.set_autocommit(False)
        try:
            await conn.execute(ETL_SQL.create_stage_tables)
            await conn.commit()
            started = time.perf_counter()
            await stage_batch(conn, batch, RUN_DATE)
            return time.perf_counter() - started
        finally:
            await conn.close()

    return asyncio.run(go())


def _timed_rows(conninfo: str, statement: str, rows: list[dict], *, many: bool) -> float:
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute(OPS.set_session, _session())
        conn.commit()
        started = time.perf_counter()
        if many:
            cur.executemany(statement, rows)
        else:
            for row in rows:
                cur.execute(statement, row)
        conn.commit()
        return time.perf_counter() - started


def bench_posts(existing: int, batch_size: int, per_row_sample: int, runs: int) -> Table:
    users = max(10, existing // 100)
    with bench_database("bench_posts") as conninfo:
        _prepare(conninfo, users, existing)
        clones = Clones(conninfo)
        _release(conninfo)
        half = batch_size // 2
        # Half updates (stored posts, new counts), half inserts (new URIs).
        batch = [_post(i, users, bump=5) for i in range(half)] + [_post(existing + i, users) for i in range(half)]
        rows = [
            {"uri": p.uri, "did": p.did, "likes": p.likes, "replies": p.replies, "quotes": p.quotes,
             "reposts": p.reposts, "created_at": p.created_at}
            for p in batch
        ]  # fmt: skip
        sample = rows[: per_row_sample // 2] + rows[half : half + per_row_sample // 2]
        try:
            ours = median_of(runs, lambda: _timed_stage(clones.fresh(), StagedBatch(posts=batch)))
            many = median_of(runs, lambda: _timed_rows(clones.fresh(), BENCH.upsert_post_row, rows, many=True))
            single = median_of(runs, lambda: _timed_rows(clones.fresh(), BENCH.upsert_post_row, sample, many=False))
        finally:
            clones.drop_all()
    table = Table(
        f"Posts: stage-and-merge {batch_size:,} posts (half updates, half new) into {existing:,} stored, {server_label()}",
        ["path", "rows/s", "vs executemany", "vs per-row"],
    )
    r_ours, r_many, r_single = batch_size / ours, batch_size / many, len(sample) / single
    table.add("COPY + merge (project)", r_ours, f"{r_ours / r_many:.1f}x", f"{r_ours / r_single:.1f}x")
    table.add("executemany INSERT ... ON CONFLICT", r_many, "1.0x", f"{r_many / r_single:.1f}x")
    table.add(f"one INSERT ... ON CONFLICT per row ({len(sample):,}-row sample)", r_single, f"{r_single / r_many:.2f}x", "1.0x")
    table.notes.append(f"Median of {runs} runs, each on a fresh clone of the same prepared database. Targets: >= 2x executemany, >= 15x per-row.")
    table.ratios = {"executemany": r_ours / r_many, "per_row": r_ours / r_single}  # type: ignore[attr-defined]
    return table


def _timed_snapshot_upsert(conninfo: str, profiles: list[Profile]) -> float:
    """The project's snapshot upsert as a batch runs it: COPY the profiles, analyze, upsert_snapshots."""

    async def go() -> float:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await conn.execute(OPS.set_session, _session())
        await conn.execute(ETL_SQL.create_stage_tables)
        await conn.set_autocommit(False)
        try:
            started = time.perf_counter()
            async with conn.transaction():
                await copy_rows(
                    conn,
                    ETL_SQL.copy_profiles,
                    PROFILE_TYPES,
                    ((p.did, p.handle, p.display_name, p.avatar, p.followers, p.follows, p.posts) for p in profiles),
                )
                await conn.execute(ETL_SQL.analyze_stage)
                await conn.execute(ETL_SQL.upsert_snapshots, {"date": RUN_DATE})
            return time.perf_counter() - started
        finally:
            await conn.close()

    return asyncio.run(go())


def bench_snapshots(users: int, posts_per_user: int, per_row_sample: int, runs: int) -> Table:
    with bench_database("bench_snaps") as conninfo:
        _prepare(conninfo, users, users * posts_per_user)
        clones = Clones(conninfo)
        _release(conninfo)
        rng = random.Random(1)
        profiles = [
            Profile(_did(i), f"u{i}.bench.example", None, None, rng.randrange(10_000), rng.randrange(500), posts_per_user)
            for i in range(users)
        ]
        rows = [
            {"did": pr.did, "date": RUN_DATE, "followers": pr.followers, "follows": pr.follows, "posts": pr.posts}
            for pr in profiles
        ]
        sample = rows[:per_row_sample]
        try:
            ours = median_of(runs, lambda: _timed_snapshot_upsert(clones.fresh(), profiles))
            many = median_of(runs, lambda: _timed_rows(clones.fresh(), BENCH.upsert_snapshot_row, rows, many=True))
            single = median_of(runs, lambda: _timed_rows(clones.fresh(), BENCH.upsert_snapshot_row, sample, many=False))
        finally:
            clones.drop_all()
    table = Table(
        f"Snapshots: upsert for {users:,} users ({posts_per_user} stored posts each), {server_label()}",
        ["path", "users/s", "vs executemany", "vs per-row"],
    )
    r_ours, r_many, r_single = users / ours, users / many, len(sample) / single
    table.add("COPY + upsert_snapshots (project)", r_ours, f"{r_ours / r_many:.1f}x", f"{r_ours / r_single:.1f}x")
    table.add("executemany of the one-user upsert", r_many, "1.0x", f"{r_many / r_single:.1f}x")
    table.add(f"one-user upsert per row ({len(sample):,}-row sample)", r_single, f"{r_single / r_many:.2f}x", "1.0x")
    table.notes.append(
        f"Median of {runs} runs on fresh clones. Every path writes the same rows and sums each user's "
        "posts in SQL; the baselines do it one user per statement."
    )
    table.ratios = {"executemany": r_ours / r_many, "per_row": r_ours / r_single}  # type: ignore[attr-defined]
    return table
