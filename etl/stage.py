"""Staging a batch: binary COPY into the temporary tables, then the merge statements of sql/etl."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from psycopg import AsyncConnection

from etl.sqlfiles import queries
from etl.validate import Post, Profile

ETL = queries("etl")

# Binary COPY sends each value in the column's own type; without set_types psycopg would pick
# by Python type (an int could go as smallint), which binary COPY rejects.
PROFILE_TYPES = ["text", "text", "text", "text", "int4", "int4", "int4"]
POST_TYPES = ["text", "text", "timestamptz", "int4", "int4", "int4", "int4"]
STATUS_TYPES = ["text", "text"]
READ_TYPES = ["text", "text", "timestamptz", "bool"]
ASKED_TYPES = ["text", "text"]

# The merge, in order: handles are freed before users are updated, posts are merged before the
# snapshot sums them, deletions before the sums too.
MERGE_STEPS = (
    "free_taken_handles",
    "merge_users",
    "record_status",
    "merge_posts",
    "delete_vanished_window_posts",
    "delete_vanished_refreshed_posts",
    "upsert_snapshots",
    "update_user_state",
)


@dataclass
class StagedBatch:
    """One batch's rows for the stage tables."""

    profiles: list[Profile] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    reads: list[tuple] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)


async def copy_rows(conn: AsyncConnection, statement: str, types: list[str], rows) -> None:
    """Binary COPY of rows with their column types set."""
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            await copy.write_row(row)


async def stage_batch(conn: AsyncConnection, batch: StagedBatch, run_date: date) -> dict[str, int]:
    """COPY the batch and merge it in one transaction; the counts of what changed."""
    counts = {"posts_merged": 0, "posts_deleted": 0, "snapshots": 0}
    async with conn.transaction():
        await copy_rows(
            conn,
            ETL.copy_profiles,
            PROFILE_TYPES,
            ((p.did, p.handle, p.display_name, p.avatar, p.followers, p.follows, p.posts) for p in batch.profiles),
        )
        await copy_rows(
            conn,
            ETL.copy_posts,
            POST_TYPES,
            ((p.uri, p.did, p.created_at, p.likes, p.replies, p.quotes, p.reposts) for p in batch.posts),
        )
        await copy_rows(conn, ETL.copy_status, STATUS_TYPES, batch.statuses)
        await copy_rows(conn, ETL.copy_reads, READ_TYPES, batch.reads)
        await copy_rows(conn, ETL.copy_asked, ASKED_TYPES, batch.asked)
        await conn.execute(ETL.analyze_stage)
        params = {"date": run_date}
        for step in MERGE_STEPS:
            query = ETL.get(step)
            cur = await conn.execute(query.sql, params if query.params else None)
            if step == "merge_posts":
                counts["posts_merged"] = cur.rowcount
            elif step.startswith("delete_"):
                counts["posts_deleted"] += cur.rowcount
            elif step == "upsert_snapshots":
                counts["snapshots"] = cur.rowcount
    return counts
