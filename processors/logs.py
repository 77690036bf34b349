"""Structured JSON logs.

Every log line is one JSON object: ``ts``, ``level``, ``logger``, ``event`` (the message, an event
name such as ``routing.event.invalid``) and the fields passed with ``extra=``. Fields whose names
suggest secrets or personal data are replaced by a redaction marker before they are written, as a
last line of defence; call sites pass ids and coordinates only.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["REDACTED", "JsonFormatter", "configure_logging"]

REDACTED: Final = "***redacted***"

_SENSITIVE_PARTS: Final = (
    "secret",
    "token",
    "password",
    "authorization",
    "api_key",
    "apikey",
    "email",
    "name",
    "phone",
    "payload",
    "body",
    "cookie",
)
_ALLOWED_NAMES: Final = frozenset({"event_name", "topic", "logger_name", "connector_name"})
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    if lowered in _ALLOWED_NAMES:
        return False
    return any(part in lowered for part in _SENSITIVE_PARTS)


def _clean(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): REDACTED if _is_sensitive(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, redacting sensitive field names."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            document[key] = REDACTED if _is_sensitive(key) else _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            document["exc_type"] = record.exc_info[0].__name__
        return json.dumps(document, default=str, separators=(",", ":"))


def configure_logging(level: str = "info") -> logging.Handler:
    """Send all logs as JSON lines to stderr; returns the handler (Faust's worker reuses it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler
