"""Structured JSON logs.

Every log line is one JSON object: ``ts``, ``level``, ``logger``, ``event`` (the message, an event
name such as ``routing.event.invalid``) and the fields passed with ``extra=``. Call sites pass ids
and coordinates only; two last lines of defence stand behind them:

- fields whose names suggest secrets or personal data are replaced by :data:`REDACTED`;
- the message and every other string field go through :func:`redact_text`, which replaces
  e-mail addresses (also URL-encoded, ``%40``), URL query strings (scheme, host and path are
  kept: ``https://h/p?***redacted***``), ``Bearer``/``Basic`` credentials and
  ``Authorization``-like ``name: value`` or ``name=value`` pairs, JWTs, ``whsec_`` signing
  secrets and ``pat-`` private app tokens (their prefixes are kept, so a line still says what
  kind of secret it was).

Third-party libraries log at INFO things we must not keep: httpx writes
``HTTP Request: POST <full URL>`` for every call (partner search terms in query strings carry
e-mails, tenant webhook URLs carry tokens), uvicorn writes every request line. So the
loggers in :data:`THIRD_PARTY_LOGGERS` (and their children) are set to WARNING by default
(``QI_LOG_THIRD_PARTY_LEVEL``); what they still write is redacted like everything else.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "REDACTED",
    "THIRD_PARTY_LOGGERS",
    "JsonFormatter",
    "configure_logging",
    "redact_text",
]

REDACTED: Final = "***redacted***"

THIRD_PARTY_LOGGERS: Final[tuple[str, ...]] = (
    "aiohttp",
    "aiokafka",
    "asyncio",
    "confluent_kafka",
    "faust",
    "fastapi",
    "httpcore",
    "httpx",
    "kafka",
    "mode",
    "redis",
    "urllib3",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
)
"""Loggers (with their children) held at the third-party level, WARNING by default."""

# Order matters: prefixed secrets and credentials first, then query strings, then e-mails.
_TEXT_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (re.compile(r"\bpat-[A-Za-z0-9]+-[A-Za-z0-9-]+"), "pat-" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-token|api[_-]?(?:key|token)|access[_-]?token"
            r"|refresh[_-]?token|client[_-]?secret|password|secret|token)"
            r"(\"?'?\s*[:=]\s*\"?'?)(?!\s*(?:bearer|basic)\b)(?!\*\*\*)[^\s\"'&,;}]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\?(?=[^\s\"'<>]*=)[^\s#\"'<>]*"), "?" + REDACTED),
    (re.compile(r"[A-Za-z0-9._+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), REDACTED),
)

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


def redact_text(text: str) -> str:
    """``text`` with e-mails, query strings, credentials and known secrets replaced.

    See the module docstring for what is recognised. It errs on the side of redacting:
    any ``?`` followed by something with an ``=`` is taken for a query string.
    """
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): REDACTED if _is_sensitive(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return redact_text(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, redacting sensitive fields and text."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            document[key] = REDACTED if _is_sensitive(key) else _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            document["exc_type"] = record.exc_info[0].__name__
        return json.dumps(document, default=str, separators=(",", ":"))


def configure_logging(
    level: str = "info",
    *,
    third_party_level: str = "warning",
    third_party_loggers: Iterable[str] = THIRD_PARTY_LOGGERS,
) -> logging.Handler:
    """Send all logs as JSON lines to stderr; returns the handler (Faust's worker reuses it).

    ``level`` is the root level (our own loggers); ``third_party_loggers`` are held at
    ``third_party_level`` unless ``level`` is stricter.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    levels = logging.getLevelNamesMapping()
    quiet = max(levels[level.upper()], levels[third_party_level.upper()])
    for name in third_party_loggers:
        logging.getLogger(name).setLevel(quiet)
    return handler
