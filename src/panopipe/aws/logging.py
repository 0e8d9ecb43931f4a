"""Structured logs for Lambda: one JSON object per line, with the invocation's request id."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("panopipe_request_id", default=None)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time, level, logger, message, request id, and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        document |= {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in document}
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, separators=(",", ":"))


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted, not the stream it was created with."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def bind_request(request_id: str | None) -> None:
    """Tag every following log line of this invocation with ``request_id``."""
    _request_id.set(request_id)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send the ``panopipe`` loggers' records of ``level`` and above to standard output as JSON lines (the
    handler added once per process; the level set at every call, since the CLI's set-up may have changed it)."""
    logger = logging.getLogger("panopipe")
    logger.setLevel(level)
    logger.propagate = False
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)


__all__ = ["JsonFormatter", "bind_request", "configure_json_logging"]
