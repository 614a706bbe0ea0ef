"""The CLI's foundation: exit statuses, error lines, masked passwords, logs, the embedded database."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import psycopg
import pytest
from click.testing import CliRunner

from etl import embedded, redact
from etl.cli import cli
from etl.logs import JsonFormatter, set_run_id
from tests.conftest import REPO

PASSWORD = "hunter2-Sup3r#secret"
# Nothing listens on port 9 of the loopback interface: connections are refused at once.
DEAD_PORT = "9"


@pytest.fixture(autouse=True)
def _forget_secrets():
    yield
    redact._secrets.clear()


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kwargs)


def test_unknown_command_is_a_usage_error_exit_2():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_unreachable_database_exits_3_with_one_clear_line(clean_environ, monkeypatch):
    monkeypatch.setenv("DB_HOST", "127.0.0.1")
    monkeypatch.setenv("DB_PORT", DEAD_PORT)
    monkeypatch.setenv("DB_NAME", "dopplersky_db")
    monkeypatch.setenv("DB_USER", "etl")
    result = invoke("schema", "status")
    assert result.exit_code == 3
    assert result.output.startswith("Error: cannot connect to the database etl@127.0.0.1:9/dopplersky_db: ")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["DB_PASSWORD", "DATABASE_URL", "DATABASE_URL_KV", "config_file"])
def test_password_never_appears_in_output_or_logs(clean_environ, monkeypatch, how):
    if how == "DB_PASSWORD":
        monkeypatch.setenv("DB_HOST", "127.0.0.1")
        monkeypatch.setenv("DB_PORT", DEAD_PORT)
        monkeypatch.setenv("DB_USER", "etl")
        monkeypatch.setenv("DB_PASSWORD", PASSWORD)
        args = []
    elif how == "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", f"postgresql://etl:{PASSWORD.replace('#', '%23')}@127.0.0.1:{DEAD_PORT}/db")
        args = []
    elif how == "DATABASE_URL_KV":
        monkeypatch.setenv("DATABASE_URL", f"host=127.0.0.1 port={DEAD_PORT} user=etl password='{PASSWORD}'")
        args = []
    else:
        config = clean_environ / ".env.production"
        config.write_text(f"DB_HOST=127.0.0.1\nDB_PORT={DEAD_PORT}\nDB_PASSWORD='{PASSWORD}'\n")
        args = ["--config", str(config)]
    for command in (["schema", "status"], ["schema", "apply"], ["db", "url"], ["db", "status"]):
        for log_args in ([], ["-v"], ["-v", "--log-format", "json"]):
            result = invoke(*args, *log_args, *command)
            assert PASSWORD not in result.output, (command, result.output)
            assert PASSWORD.replace("#", "%23") not in result.output
    help_text = invoke("--help").output + invoke("schema", "apply", "--help").output
    assert PASSWORD not in help_text


def test_redact_masks_passwords_in_urls_and_keyword_strings():
    assert redact.redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact.redact("host=h password=pw user=u") == "host=h password=*** user=u"
    assert redact.redact("password='p w' x") == "password=*** x"
    redact.register_secret("sekrit")
    assert redact.redact("error near sekrit!") == "error near ***!"


def test_db_url_masks_a_configured_password(clean_environ, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://etl:{PASSWORD.replace('#', '%23')}@db.internal/x")
    result = invoke("db", "url")
    assert result.exit_code == 0
    assert "***" in result.output and "secret" not in result.output


def test_json_log_lines_carry_timestamp_level_logger_message_run_id():
    record = logging.LogRecord("etl.run", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    set_run_id(42)
    try:
        from etl.logs import _RunIdFilter

        _RunIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        set_run_id(None)
    assert set(line) == {"timestamp", "level", "logger", "message", "run_id"}
    assert (line["level"], line["logger"], line["message"], line["run_id"]) == ("INFO", "etl.run", "hello world", "42")


def test_a_new_run_does_not_log_under_the_previous_runs_id(clean_environ):
    from etl import logs
    from etl import run as runmod
    from etl.config import load_settings

    settings = load_settings(environ={"DATABASE_URL": f"postgresql://etl@127.0.0.1:{DEAD_PORT}/x"})
    set_run_id(41)  # the run before, in the same process (etl demo makes several)
    try:
        with pytest.raises(runmod.RunError):
            runmod.execute(settings, runmod.RunOptions(shards=1), install_signals=False)
        assert logs._run_id is None
    finally:
        set_run_id(None)


def test_json_logs_through_the_cli_are_one_object_per_line(clean_environ, monkeypatch, dsn):
    monkeypatch.setenv("DATABASE_URL", dsn)
    proc = subprocess.run(
        [sys.executable, "-m", "etl", "--log-format", "json", "-v", "schema", "apply"],
        cwd=clean_environ,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)


def test_no_database_configured_uses_the_embedded_server_in_the_data_dir(clean_environ, monkeypatch):
    data_dir = clean_environ / "state"
    monkeypatch.setenv("ETL_DATA_DIR", str(data_dir))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "etl", "schema", "apply"],
            cwd=clean_environ,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        logged = [line for line in proc.stderr.splitlines() if "embedded PostgreSQL" in line]
        assert len(logged) == 1
        assert f"using the embedded PostgreSQL in {data_dir / 'pgdata'}" in logged[0]
        assert embedded.running(data_dir) is not None
        # A later command reuses the running server and the migrated database.
        again = invoke("schema", "apply")
        assert again.exit_code == 0
        assert "Nothing to do" in again.output
        conninfo = embedded.start(data_dir)
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM etl_schema_history").fetchone()[0] >= 2
    finally:
        embedded.stop(data_dir)
    assert embedded.running(data_dir) is None
