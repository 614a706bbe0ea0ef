"""`etl status`: the runs of a day, their shards, states and counts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from etl.cli.options import common_options, open_database, settings_from_context

SHARD_COLUMNS = (
    ("shard", "shard"),
    ("status", "status"),
    ("host", "host"),
    ("pid", "pid"),
    ("started", "started_at"),
    ("finished", "finished_at"),
    ("selected", "users_selected"),
    ("written", "users_written"),
    ("failed", "users_failed"),
    ("inactive", "users_inactive"),
    ("no-feed", "feed_skipped"),
    ("requests", "api_requests"),
    ("retries", "retries"),
    ("429s", "rate_limited"),
    ("posts", "posts_merged"),
)


@click.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="The day (UTC); default today.")
@common_options
def status(day: datetime | None) -> None:
    """Show each run of a day with its shards, their states and counts.

    A shard recorded as running whose worker is gone is marked stale first, so a crashed run
    never shows as running.

    Example: etl status --date 2026-12-03
    """
    from etl.run import ETL, mark_stale_shards

    settings = settings_from_context()
    run_date: date = day.date() if day else datetime.now(UTC).date()
    with open_database(settings, autocommit=True) as conn:
        mark_stale_shards(conn)
        runs = conn.execute(ETL.runs_of_day, {"run_date": run_date}).fetchall()
        if not runs:
            latest = conn.execute(ETL.latest_run_date).fetchone()[0]
            hint = f" The latest run was on {latest} (etl status --date {latest})." if latest else " No run has been recorded yet."
            click.echo(f"No runs on {run_date}.{hint}")
            return
        for run_id, state, _, shard_count, selection, started, completed, duration, total, failed, _error in runs:
            took = f", {duration:.0f}s" if duration is not None else ""
            done = f", finished {completed:%H:%M:%S}" if completed else ""
            click.echo(
                f"Run {run_id} of {run_date}: {state} ({shard_count} shards, {selection}; "
                f"started {started:%H:%M:%S %Z}{done}{took}; {total} snapshots, {failed or 0} users failed)"
            )
            with conn.cursor(row_factory=_dict_rows) as cur:
                shards = cur.execute(ETL.shards_of_run, {"run_id": run_id}).fetchall()
            present = {row["shard"] for row in shards}
            rows = [[_cell(row.get(key)) for _, key in SHARD_COLUMNS] for row in shards]
            rows += [[str(s), "not started"] + [""] * (len(SHARD_COLUMNS) - 2) for s in range(shard_count) if s not in present]
            rows.sort(key=lambda r: int(r[0]))
            widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (title, _) in enumerate(SHARD_COLUMNS)]
            click.echo("  " + "  ".join(t.ljust(w) for (t, _), w in zip(SHARD_COLUMNS, widths, strict=True)).rstrip())
            for r in rows:
                click.echo("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
            for row in shards:
                if row["error"]:
                    click.echo(f"  shard {row['shard']}: {row['error']}")


def _dict_rows(cursor):
    from psycopg.rows import dict_row

    return dict_row(cursor)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value:%H:%M:%S}"
    return str(value)
