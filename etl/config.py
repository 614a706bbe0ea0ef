"""Settings: layered sources, one validation pass, and where each value came from."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


def _project_root() -> Path:
    """Where config/ and sql/ are: beside the package in a checkout, else the installed share dir."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "config" / "default.yaml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "dopplersky-workers"


PROJECT_ROOT = _project_root()
DEFAULT_FILE = PROJECT_ROOT / "config" / "default.yaml"

# Names the reference README (and operators' existing .env files) use: the key upper-cased.
# Every other setting is ETL_ + the key upper-cased.
REFERENCE_KEYS = frozenset(
    {
        "database_url",
        "db_host",
        "db_port",
        "db_name",
        "db_user",
        "db_password",
        "db_sslmode",
        "max_workers",
        "log_level",
        "bluesky_base_url",
    }
)
SECRET_KEYS = frozenset({"db_password", "database_url"})


class ConfigError(Exception):
    """A setting is unknown or has a bad value; the message names key, value and source."""


def env_name(key: str) -> str:
    """Environment variable name of a setting key."""
    return key.upper() if key in REFERENCE_KEYS else "ETL_" + key.upper()


# --- value parsers: each takes the raw value (str from env/.env, any from YAML) -----------------


def _int(minimum: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        if isinstance(raw, int):
            value = raw
        else:
            text = str(raw).strip()
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError("expected a whole number")
            value = int(text)
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _float(minimum: float | None = None) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum:g}")
        return value

    return parse


def _choice(*choices: str, upper: bool = False) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip()
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return parse


def _text(raw: Any) -> str:
    if isinstance(raw, (dict, list)):
        raise ValueError("expected a single value, not a list or mapping")
    return str(raw)


def _http_url(raw: Any) -> str:
    text = _text(raw).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("expected a base URL without query or fragment")
    return text.rstrip("/")


def _prom_file(raw: Any) -> str:
    text = _text(raw).strip()
    if not text.endswith(".prom"):
        raise ValueError("must end in .prom (the node_exporter textfile collector reads only those)")
    return text


def _pg_memory(raw: Any) -> str:
    text = _text(raw).strip()
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", text):
        raise ValueError("expected a PostgreSQL memory size such as 64MB (units kB, MB, GB)")
    return text.replace(" ", "")


def _conninfo(raw: Any) -> str:
    from psycopg.conninfo import conninfo_to_dict

    text = _text(raw).strip()
    try:
        conninfo_to_dict(text)
    except Exception:
        raise ValueError("is not a valid PostgreSQL connection string") from None
    return text


@dataclass(frozen=True)
class Spec:
    """How one setting is parsed; its default and comment live in config/default.yaml."""

    key: str
    parse: Callable[[Any], Any]

    @property
    def env(self) -> str:
        return env_name(self.key)


SPECS: dict[str, Spec] = {
    s.key: s
    for s in [
        Spec("database_url", _conninfo),
        Spec("db_host", _text),
        Spec("db_port", _int(1)),
        Spec("db_name", _text),
        Spec("db_user", _text),
        Spec("db_password", _text),
        Spec("db_sslmode", _choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
        Spec("db_connect_timeout", _int(1)),
        Spec("statement_timeout", _float(0)),
        Spec("work_mem", _pg_memory),
        Spec("data_dir", _text),
        Spec("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True)),
        Spec("log_format", _choice("text", "json")),
        Spec("log_file", _text),
        Spec("bluesky_base_url", _http_url),
        Spec("rate_limit", _float(0)),
        Spec("concurrency", _int(1)),
        Spec("max_attempts", _int(1)),
        Spec("connect_timeout", _float(0.001)),
        Spec("request_timeout", _float(0.001)),
        Spec("backoff_base", _float(0)),
        Spec("backoff_max", _float(0)),
        Spec("max_response_bytes", _int(1024)),
        Spec("max_pages", _int(1)),
        Spec("health_actor", _text),
        Spec("max_workers", _int(1)),
        Spec("shards", _int(1)),
        Spec("selection", _choice("active", "all")),
        Spec("active_days", _int(1)),
        Spec("batch_users", _int(1)),
        Spec("post_window_days", _int(1)),
        Spec("backfill_max_posts", _int(1)),
        Spec("full_read_days", _int(0)),
        Spec("metrics_file", _prom_file),
        Spec("progress_seconds", _float(1)),
    ]
}
ENV_TO_KEY = {spec.env: key for key, spec in SPECS.items()}


@dataclass(frozen=True)
class Settings:
    """Resolved settings; `origin[key]` says which source supplied each value."""

    values: Mapping[str, Any]
    origin: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    def replace(self, **overrides: Any) -> Settings:
        """A copy with some values replaced (origin 'override'); used by tests and the CLI."""
        values = dict(self.values)
        origin = dict(self.origin)
        for key, value in overrides.items():
            if key not in SPECS:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = value
            origin[key] = "override"
        return Settings(values, origin)

    def secrets(self) -> list[str]:
        """The secret strings these settings hold, for redaction."""
        found = []
        if self.values.get("db_password"):
            found.append(str(self.values["db_password"]))
        if self.values.get("database_url"):
            from etl.redact import conninfo_password

            password = conninfo_password(self.values["database_url"])
            if password:
                found.append(password)
        return found


# --- sources -----------------------------------------------------------------------------------

Layer = list[tuple[str, Any, str]]  # (key as written, raw value, where it came from)


def _shown(key: str, raw: Any) -> str:
    return "(hidden)" if key in SECRET_KEYS else repr(raw)


def read_yaml_file(path: Path) -> Layer:
    """A flat YAML mapping of settings."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"config file {where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    return [(str(k), v, str(path)) for k, v in data.items()]


_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def read_env_file(path: Path) -> Layer:
    """KEY=VALUE lines as in .env files: comments, blank lines, `export`, quotes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    layer: Layer = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if not match:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.group(1), match.group(2).strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            if end < 0:
                raise ConfigError(f"{path}:{number}: unclosed quote in the value of {key}")
            rest = value[end + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise ConfigError(f"{path}:{number}: unexpected text after the quoted value of {key}")
            value = value[1:end]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        else:
            value = re.sub(r"\s+#.*$", "", value)
        layer.append((key, value, f"{path}:{number}"))
    return layer


def read_config_file(path: Path) -> Layer:
    """A --config file: YAML by extension (.yaml, .yml, .json), KEY=VALUE lines otherwise."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return read_yaml_file(path)
    return read_env_file(path)


def read_environment(environ: Mapping[str, str]) -> Layer:
    """Recognised variables of the real environment; empty values count as unset."""
    return [(name, environ[name], "the environment") for name in ENV_TO_KEY if environ.get(name, "") != ""]


def _key_of(written: str) -> str | None:
    if written in SPECS:
        return written
    return ENV_TO_KEY.get(written) or ENV_TO_KEY.get(written.upper())


def _unknown(written: str, where: str) -> ConfigError:
    names = list(SPECS) + list(ENV_TO_KEY)
    close = difflib.get_close_matches(written, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"unknown setting {written!r} in {where}{hint}")


def _apply(values: dict, origin: dict, layer: Layer, *, strict: bool) -> None:
    for written, raw, where in layer:
        key = _key_of(written)
        if key is None:
            if strict:
                raise _unknown(written, where)
            continue
        spec = SPECS[key]
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and key != "db_password"):
            values[key] = None
            origin[key] = where
            continue
        try:
            values[key] = spec.parse(raw)
        except ValueError as exc:
            shown = _shown(key, raw)
            raise ConfigError(f"{spec.env}={shown} from {where}: {exc}") from None
        origin[key] = where


def load_settings(
    *,
    config_file: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    defaults_file: Path = DEFAULT_FILE,
) -> Settings:
    """Resolve settings: flag > environment > --config file > ./.env > config/default.yaml."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else Path(cwd)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    defaults = read_yaml_file(defaults_file)
    _apply(values, origin, defaults, strict=True)
    missing = set(SPECS) - set(values)
    if missing:
        raise ConfigError(f"{defaults_file} lacks the settings {', '.join(sorted(missing))}")

    dotenv = cwd / ".env"
    if dotenv.is_file():
        _apply(values, origin, read_env_file(dotenv), strict=True)
    if config_file is not None:
        _apply(values, origin, read_config_file(Path(config_file)), strict=True)
    _apply(values, origin, read_environment(environ), strict=False)
    names = flag_names or {}
    flag_layer = [
        (key, value, names.get(key, "--" + key.replace("_", "-")))
        for key, value in (flags or {}).items()
        if value is not None
    ]
    _apply(values, origin, flag_layer, strict=True)
    return Settings(values, origin)


def describe(settings: Settings, keys: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """(env name, shown value, origin) rows, secrets hidden."""
    rows = []
    for key in keys or SPECS:
        value = settings.values.get(key)
        shown = "(hidden)" if key in SECRET_KEYS and value else ("" if value is None else str(value))
        rows.append((env_name(key), shown, settings.origin.get(key, "")))
    return rows
