"""Standard Webhooks request bodies and headers. Pure: no I/O, no clock.

Body: ``{"data": <contract record>, "timestamp": <occurred_at>, "type": <event_type>}`` as
compact UTF-8 JSON with sorted keys, so the same record always gives the same bytes.

Headers:

- ``webhook-id``: the record's ``idempotency_key``, identical on every retry so receivers
  can deduplicate;
- ``webhook-timestamp``: integer Unix seconds of *this* attempt (the caller passes it);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``
  computed by the ``standardwebhooks`` reference library;
- ``content-type``, ``user-agent`` and ``x-correlation-id``;
- ``x-queast-replay-id``: the operator run (replay, redrive, ...) that sent this copy again,
  when there is one (the ``webhook-id`` stays the artifact's).

The signed id and timestamp must not contain ``.`` (the spec forbids it: the signed
content would be ambiguous), so an idempotency key with a dot is refused as permanent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from connectors.base.config import reveal_secret
from connectors.base.errors import PermanentError
from connectors.base.http import USER_AGENT
from connectors.base.sink import OutboundRecord

__all__ = [
    "WebhookRequest",
    "build_body",
    "build_webhook_request",
    "sign",
]

_PARTNER: Final[str] = "webhook"
# Header-safe, no "." (signed-content delimiter), no space or "," (signature list syntax).
_MESSAGE_ID: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_:\-]{1,256}")
# Visible ASCII only: anything else is dropped rather than failing the delivery.
_HEADER_VALUE: Final[re.Pattern[str]] = re.compile(r"[\x21-\x7e]{1,256}")


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookRequest:
    """The exact bytes and headers of one attempt."""

    body: bytes
    headers: Mapping[str, str]


def build_body(record: OutboundRecord) -> bytes:
    """The request body for ``record``; ``PermanentError`` if it is not JSON-serialisable."""
    envelope: dict[str, Any] = {
        "type": record.event_type,
        "timestamp": record.occurred_at,
        "data": record.payload,
    }
    try:
        text = json.dumps(
            envelope,
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
            allow_nan=False,
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise PermanentError("payload is not JSON-serialisable", partner=_PARTNER) from exc


def sign(*, secret: SecretStr, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one attempt.

    ``body`` must be the exact bytes sent (UTF-8). Raises ``PermanentError`` for a
    message id the spec does not allow.
    """
    if not _MESSAGE_ID.fullmatch(message_id):
        raise PermanentError("idempotency key is not a valid webhook-id", partner=_PARTNER)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError("body is not UTF-8", partner=_PARTNER) from exc
    signer = Webhook(reveal_secret(secret))
    return signer.sign(message_id, datetime.fromtimestamp(timestamp, tz=UTC), text)


def build_webhook_request(
    record: OutboundRecord,
    *,
    secret: SecretStr,
    attempt_timestamp: int,
    user_agent: str = USER_AGENT,
) -> WebhookRequest:
    """Body and headers for one attempt of ``record``, signed at ``attempt_timestamp``."""
    body = build_body(record)
    signature = sign(
        secret=secret,
        message_id=record.idempotency_key,
        timestamp=attempt_timestamp,
        body=body,
    )
    headers = {
        "content-type": "application/json",
        "user-agent": user_agent,
        "webhook-id": record.idempotency_key,
        "webhook-timestamp": str(attempt_timestamp),
        "webhook-signature": signature,
    }
    if _HEADER_VALUE.fullmatch(record.correlation_id):
        headers["x-correlation-id"] = record.correlation_id
    if record.replay_id is not None and _HEADER_VALUE.fullmatch(record.replay_id):
        headers["x-queast-replay-id"] = record.replay_id
    return WebhookRequest(body=body, headers=headers)
