"""Options shared by every command, and turning them into settings."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import click

from etl import redact
from etl.config import ConfigError, Settings, load_settings
from etl.logs import setup_logging

log = logging.getLogger("etl")


class EtlError(click.ClickException):
    """A domain error: "Error: ..." and exit status 1, its message never carrying a secret."""

    def format_message(self) -> str:
        return redact.redact(self.message)


class ConfigurationError(EtlError):
    """Bad configuration or usage: exit status 2."""

    exit_code = 2


class CannotStart(EtlError):
    """The database or the AppView cannot be reached: exit status 3."""

    exit_code = 3


def common_options(func: Callable) -> Callable:
    """--config, --verbose and --log-format, accepted by the group and by every command."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Settings file: YAML, or KEY=VALUE lines like .env.production.",
    )
    @click.option("-v", "--verbose", is_flag=True, default=None, help="Log at DEBUG level (overrides LOG_LEVEL).")
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        help="Log lines as text or JSON objects (ETL_LOG_FORMAT).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: str | None, verbose: bool | None, log_format: str | None, **kwargs: Any):
        ctx = click.get_current_context()
        state = ctx.ensure_object(dict)
        if config_file is not None:
            state["config_file"] = config_file
        if verbose:
            state["verbose"] = True
        if log_format is not None:
            state["log_format"] = log_format
        return func(*args, **kwargs)

    return wrapper


def settings_from_context(
    flags: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    *,
    configure_logging: bool = True,
) -> Settings:
    """Resolve settings for the running command (flags > env > --config > .env > defaults)."""
    ctx = click.get_current_context()
    state = ctx.find_root().ensure_object(dict)
    state.update(ctx.ensure_object(dict))
    all_flags = dict(flags or {})
    names = dict(flag_names or {})
    if state.get("verbose"):
        all_flags["log_level"] = "DEBUG"
        names["log_level"] = "--verbose"
    if state.get("log_format"):
        all_flags["log_format"] = state["log_format"]
    try:
        settings = load_settings(config_file=state.get("config_file"), flags=all_flags, flag_names=names)
    except ConfigError as exc:
        raise ConfigurationError(redact.redact(str(exc))) from None
    for secret in settings.secrets():
        redact.register_secret(secret)
    if configure_logging:
        setup_logging(settings.log_level, settings.log_format, settings.log_file)
    return settings


def open_database(settings: Settings, *, autocommit: bool = False):
    """Resolve and connect to the database, or fail with exit status 3 and a clear line."""
    from etl import db

    try:
        conninfo = db.resolve_conninfo(settings)
        return db.connect(conninfo, settings, autocommit=autocommit)
    except db.DatabaseUnavailable as exc:
        raise CannotStart(str(exc)) from None
