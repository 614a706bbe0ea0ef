"""Configuration: precedence of the five sources, validation messages, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from etl.cli import cli
from etl.config import DEFAULT_FILE, SPECS, ConfigError, env_name, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_come_from_default_yaml(tmp_path):
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.rate_limit == 10.0
    assert settings.max_workers is None
    assert settings.bluesky_base_url == "https://public.api.bsky.app"
    assert settings.origin["rate_limit"] == str(DEFAULT_FILE)


def test_default_yaml_lists_every_setting_with_a_comment():
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    assert set(data) == set(SPECS)
    for line in DEFAULT_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            assert " # " in line, f"setting without a comment: {line}"


def test_reference_names_are_honoured_exactly():
    for key in ("database_url", "db_host", "db_port", "db_name", "db_user", "db_password", "db_sslmode"):
        assert env_name(key) == key.upper()
    assert env_name("max_workers") == "MAX_WORKERS"
    assert env_name("log_level") == "LOG_LEVEL"
    assert env_name("bluesky_base_url") == "BLUESKY_BASE_URL"
    assert env_name("rate_limit") == "ETL_RATE_LIMIT"
    assert env_name("post_window_days") == "ETL_POST_WINDOW_DAYS"


def test_dotenv_overrides_defaults(tmp_path):
    write(tmp_path / ".env", "MAX_WORKERS=3\n")
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.max_workers == 3
    assert settings.origin["max_workers"] == f"{tmp_path / '.env'}:1"


def test_config_file_overrides_dotenv(tmp_path):
    write(tmp_path / ".env", "MAX_WORKERS=3\n")
    config = write(tmp_path / "prod.yaml", "max_workers: 5\n")
    assert load_settings(environ={}, cwd=tmp_path, config_file=config).max_workers == 5


def test_environment_overrides_config_file(tmp_path):
    config = write(tmp_path / "prod.yaml", "max_workers: 5\n")
    settings = load_settings(environ={"MAX_WORKERS": "7"}, cwd=tmp_path, config_file=config)
    assert settings.max_workers == 7
    assert settings.origin["max_workers"] == "the environment"


def test_flag_overrides_environment(tmp_path):
    settings = load_settings(
        environ={"MAX_WORKERS": "7"}, cwd=tmp_path, flags={"max_workers": 2}, flag_names={"max_workers": "--workers"}
    )
    assert settings.max_workers == 2
    assert settings.origin["max_workers"] == "--workers"


def test_dotenv_never_overrides_the_real_environment(tmp_path):
    write(tmp_path / ".env", "LOG_LEVEL=DEBUG\nETL_RATE_LIMIT=3\n")
    settings = load_settings(environ={"LOG_LEVEL": "ERROR"}, cwd=tmp_path)
    assert settings.log_level == "ERROR"
    assert settings.rate_limit == 3.0


def test_dotenv_style_config_file_like_env_production(tmp_path):
    config = write(
        tmp_path / ".env.production",
        "# production\nexport DB_HOST=db.internal\nDB_PORT=6432\nDB_PASSWORD='s3cr#t'\n"
        'DB_NAME="dopplersky_db"  # trailing comment\nETL_RATE_LIMIT=8 # per machine\n',
    )
    settings = load_settings(environ={}, cwd=tmp_path, config_file=config)
    assert (settings.db_host, settings.db_port, settings.db_name) == ("db.internal", 6432, "dopplersky_db")
    assert settings.db_password == "s3cr#t"
    assert settings.rate_limit == 8.0


def test_yaml_config_accepts_environment_spellings(tmp_path):
    config = write(tmp_path / "c.yml", "ETL_RATE_LIMIT: 4\nlog_level: warning\n")
    settings = load_settings(environ={}, cwd=tmp_path, config_file=config)
    assert settings.rate_limit == 4.0
    assert settings.log_level == "WARNING"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAX_WORKERS": "abc"}, "MAX_WORKERS='abc' from the environment: expected a whole number"),
        ({"MAX_WORKERS": "-1"}, "MAX_WORKERS='-1' from the environment: must be at least 1"),
        (
            {"LOG_LEVEL": "LOUD"},
            "LOG_LEVEL='LOUD' from the environment: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            {"BLUESKY_BASE_URL": "ftp://public.api.bsky.app"},
            "BLUESKY_BASE_URL='ftp://public.api.bsky.app' from the environment: expected an http:// or https:// URL",
        ),
        ({"ETL_RATE_LIMIT": "fast"}, "ETL_RATE_LIMIT='fast' from the environment: expected a number"),
        ({"DB_SSLMODE": "maybe"}, "DB_SSLMODE='maybe' from the environment: expected one of disable, allow"),
    ],
)
def test_bad_value_names_key_value_and_source(tmp_path, environ, message):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ, cwd=tmp_path)
    assert str(info.value).startswith(message)


def test_bad_value_in_dotenv_names_file_and_line(tmp_path):
    write(tmp_path / ".env", "LOG_LEVEL=INFO\nMAX_WORKERS=many\n")
    with pytest.raises(ConfigError, match=r"MAX_WORKERS='many' from .*\.env:2: expected a whole number"):
        load_settings(environ={}, cwd=tmp_path)


def test_unknown_key_in_config_file_is_an_error_with_a_suggestion(tmp_path):
    config = write(tmp_path / "c.yaml", "max_workrs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'max_workrs' in .*c.yaml \(did you mean max_workers\?\)"):
        load_settings(environ={}, cwd=tmp_path, config_file=config)


def test_unknown_key_in_dotenv_is_an_error(tmp_path):
    write(tmp_path / ".env", "DB_HOSTNAME=x\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'DB_HOSTNAME' in .*\.env:1"):
        load_settings(environ={}, cwd=tmp_path)


def test_unrelated_environment_variables_are_ignored(tmp_path):
    # Kubernetes injects ETL_SERVICE_HOST and friends for a Service named "etl".
    settings = load_settings(environ={"ETL_SERVICE_HOST": "10.0.0.1", "PATH": "/bin"}, cwd=tmp_path)
    assert settings.rate_limit == 10.0


def test_malformed_dotenv_line_is_an_error(tmp_path):
    write(tmp_path / ".env", "DB_HOST db\n")
    with pytest.raises(ConfigError, match=r"\.env:1: expected KEY=VALUE"):
        load_settings(environ={}, cwd=tmp_path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={}, cwd=tmp_path, config_file=tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_line(tmp_path):
    config = write(tmp_path / "c.yaml", "rate_limit: 3\nshards: [1,\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+ is not valid YAML"):
        load_settings(environ={}, cwd=tmp_path, config_file=config)


def test_empty_environment_value_counts_as_unset(tmp_path):
    assert load_settings(environ={"MAX_WORKERS": ""}, cwd=tmp_path).max_workers is None


def test_bad_database_url_does_not_echo_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"DATABASE_URL": "postgresql://u:hunter2@h/db?sslmode=nonsense x"}, cwd=tmp_path)
    assert "hunter2" not in str(info.value)
    assert "DATABASE_URL=(hidden) from the environment" in str(info.value)


# --- through the CLI: one line, exit status 2, before any work --------------------------------


def test_cli_bad_value_exits_2_with_one_line(clean_environ, monkeypatch):
    monkeypatch.setenv("MAX_WORKERS", "abc")
    result = CliRunner().invoke(cli, ["schema", "status"])
    assert result.exit_code == 2
    assert result.output == "Error: MAX_WORKERS='abc' from the environment: expected a whole number\n"


def test_cli_bad_log_level_exits_2(clean_environ, monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    result = CliRunner().invoke(cli, ["health"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: LOG_LEVEL='LOUD' from the environment: expected one of")


def test_cli_bad_base_url_in_config_file_exits_2(clean_environ):
    config = write(clean_environ / "c.yaml", "bluesky_base_url: file:///etc/passwd\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "health"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: BLUESKY_BASE_URL='file:///etc/passwd' from {config}: expected an http:// or https:// URL\n"
    )


def test_cli_config_option_after_the_command(clean_environ):
    config = write(clean_environ / ".env.production", "MAX_WORKERS=-1\n")
    result = CliRunner().invoke(cli, ["schema", "status", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output == f"Error: MAX_WORKERS='-1' from {config}:1: must be at least 1\n"
