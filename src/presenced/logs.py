"""Log output: plain text lines or one JSON object per line (``log_format``).

Lines that describe an event carry their facts as fields (``log.info("session opened",
extra=fields(user=..., session=...))``): the text format appends them as ``key=value``, the
JSON format gives each its own key next to ``time``, ``level``, ``logger`` and ``message``,
so a log pipeline can index them without parsing the message. No field may hold a token, key
or secret; the callers log ids, addresses, codes and reasons only.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

__all__ = ["FIELDS", "TEXT_FORMAT", "JsonFormatter", "TextFormatter", "fields", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = "presenced_fields"
"""The log record attribute that holds a line's fields (set through :func:`fields`)."""

# Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the line's fields."""
    return {FIELDS: values}


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key == FIELDS and isinstance(value, dict):
            found.update(value)
        elif key not in _STANDARD:
            found[key] = value
    return found


class TextFormatter(logging.Formatter):
    """The classic line, with the fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = record.__dict__.get(FIELDS)
        if not isinstance(extra, dict) or not extra:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the line
        pairs = " ".join(f"{k}={_text(v)}" for k, v in extra.items() if v is not None)
        return f"{head} {pairs}{sep}{tail}"


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339, UTC), ``level``, ``logger``,
    ``message``, the line's fields, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level`` in ``log_format`` (``text`` or ``json``); replaces the root
    logger's handlers (a worker process calls this once at start)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
