"""Database connections: which server (configured or embedded), how to connect, errors without secrets."""

from __future__ import annotations

import logging
import os
import socket
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from etl import embedded, redact
from etl.config import Settings
from etl.sqlfiles import OPS

log = logging.getLogger("etl.db")

APPLICATION_NAME = "dopplersky-etl"

_PARTS = {
    "db_host": "host",
    "db_port": "port",
    "db_name": "dbname",
    "db_user": "user",
    "db_password": "password",
}


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message is safe to print."""


def configured_conninfo(settings: Settings) -> str | None:
    """The conninfo the settings describe, or None when no database is configured."""
    parts = {_PARTS[key]: str(settings.values[key]) for key in _PARTS if settings.values.get(key) is not None}
    if settings.db_sslmode:
        parts["sslmode"] = settings.db_sslmode
    url = settings.database_url
    if not url and not ({"host", "dbname", "user", "port"} & parts.keys()):
        return None
    # DATABASE_URL is the base; DB_* settings given as well override its parts (libpq semantics).
    return make_conninfo(url or "", **parts)


def resolve_conninfo(settings: Settings) -> str:
    """The conninfo to use: the configured database, else the embedded server (started on demand)."""
    conninfo = configured_conninfo(settings)
    if conninfo is None:
        try:
            conninfo = embedded.start(settings.data_dir)
        except embedded.EmbeddedUnavailable as exc:
            raise DatabaseUnavailable(str(exc)) from None
    password = conninfo_to_dict(conninfo).get("password")
    if password:
        redact.register_secret(password)
    return conninfo


def describe(conninfo: str) -> str:
    """`user@host:port/dbname`, never the password."""
    parts = conninfo_to_dict(conninfo)
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{parts.get('user') or os.environ.get('USER', '')}@{host}:{port}/{parts.get('dbname', '')}"


def connect(
    conninfo: str,
    settings: Settings,
    *,
    autocommit: bool = False,
    application_name: str = APPLICATION_NAME,
) -> psycopg.Connection:
    """A connection with our timeouts; connection failures become DatabaseUnavailable."""
    try:
        conn = psycopg.connect(
            conninfo,
            autocommit=autocommit,
            connect_timeout=settings.db_connect_timeout,
            application_name=application_name,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database {describe(conninfo)}: {redact.redact(_first_line(exc))}"
        ) from None
    # A session setting rather than the `options` startup parameter: PgBouncer rejects unknown
    # startup options.
    conn.execute(OPS.set_session, session_params(settings))
    if not autocommit:
        conn.commit()
    return conn


# SQLSTATE class 53: the server ran out of something (53100 disk full, 53200 memory, 53300 too
# many connections, 53400 a configured limit such as temp_file_limit).
_RESOURCE_HINT = {
    "53100": "the database server's disk is full",
    "53200": "the database server is out of memory",
    "53300": "the database server has no connection slot left",
    "53400": "a database server limit was exceeded",
}


def connect_patiently(
    conninfo: str, settings: Settings, *, seconds: float, autocommit: bool = False
) -> psycopg.Connection:
    """connect(), trying again for `seconds` while the database is unreachable (a restart or a
    failover); the last DatabaseUnavailable if it never comes back."""
    deadline = time.monotonic() + seconds
    delay = 0.2
    while True:
        try:
            return connect(conninfo, settings, autocommit=autocommit)
        except DatabaseUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s; trying again in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def error_line(exc: BaseException) -> str:
    """One line naming a failure for a shard row, a summary or a log: for a database error its
    class, SQLSTATE and the server's own message (never the statement text or a password)."""
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        message = (exc.diag.message_primary if state else None) or _first_line(exc)
        text = f"{type(exc).__name__}{f' [{state}]' if state else ''}: {message}"
        if state and state.startswith("53"):
            text = f"{_RESOURCE_HINT.get(state, 'the database server is out of resources')}: {text}"
    else:
        text = f"{type(exc).__name__}: {_first_line(exc)}"
    return redact.redact(text)[:1000]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def session_params(settings: Settings) -> dict[str, str]:
    """Parameters of OPS.set_session for these settings."""
    return {"ms": str(int(settings.statement_timeout * 1000)), "work_mem": settings.work_mem}


def whoami() -> str:
    """`user@host` of this process, recorded with migrations and runs."""
    try:
        user = os.getlogin()
    except OSError:
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    return f"{user}@{socket.gethostname()}"
