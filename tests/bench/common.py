"""What every benchmark needs: a private embedded database, a simulator process, a table printer."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from etl import embedded, migrate
from etl.config import PROJECT_ROOT, Settings, load_settings

BENCH_DIR = PROJECT_ROOT / ".etl" / "bench"


@dataclass
class Table:
    """A titled table of results, printed as Markdown."""

    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([_cell(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """The median of `runs` measurements."""
    return statistics.median(measure() for _ in range(runs))


def admin_conninfo() -> str:
    """The server the database benchmarks use: $BENCH_DSN (any PostgreSQL 15+), else the embedded one."""
    dsn = os.environ.get("BENCH_DSN")
    if dsn:
        return dsn
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return embedded.start(BENCH_DIR, "postgres")


def database_conninfo(name: str) -> str:
    """Conninfo of database `name` on the benchmark's server."""
    return make_conninfo(admin_conninfo(), dbname=name)


def server_label() -> str:
    """How the benchmarks reach their server, for the tables' titles."""
    with psycopg.connect(admin_conninfo()) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        host = conn.info.host
    transport = "Unix socket" if host.startswith("/") else f"TCP {host}"
    return f"PostgreSQL {version} over {transport}"


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[str]:
    """A fresh, migrated database named `name` on the benchmark's server."""
    admin = admin_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = database_conninfo(name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrate.apply(conn)
    try:
        yield conninfo
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def settings_for(conninfo: str, sim_url: str | None = None, **overrides) -> Settings:
    """Defaults, this database, the simulator, no client pacing unless asked."""
    # ERROR: the simulator's odd createdAt values are repaired with a warning each, by design.
    values = {"database_url": conninfo, "rate_limit": 0, "log_level": "ERROR"}
    if sim_url:
        values["bluesky_base_url"] = sim_url
    values.update(overrides)
    return load_settings(environ={}, cwd=BENCH_DIR).replace(**values)


def sim_get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.load(response)


def sim_post(url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=120) as response:
        return json.load(response)


def sim_now(sim_url: str) -> datetime:
    return datetime.fromisoformat(sim_get(sim_url + "/_sim/clock")["now"].replace("Z", "+00:00"))


def register_directly(conninfo: str, accounts: list[dict]) -> int:
    """Put the simulator's accounts in `users` with COPY (registration is not what is measured)."""
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (did, handle) FROM STDIN") as copy:
            for account in accounts:
                copy.write_row((account["did"], account["handle"] if account["handle"] != "handle.invalid" else account["did"]))
        conn.commit()
    return len(accounts)


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Stopwatch:
    """Wall time of a block."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started


def results_dir() -> Path:
    path = PROJECT_ROOT / "bench-results"
    path.mkdir(exist_ok=True)
    return path
