"""Delivery items as they travel on export, retry and dead-letter topics.

An export record (written by the router) carries the contract as its value and the delivery
envelope in ``qi.*`` headers. When a delivery is re-scheduled, the same value goes to the
connector's retry topic with the envelope plus:

- ``qi.attempt``: attempts made so far (a deferral or a park spends none);
- ``qi.hop``: how many times the delivery was re-scheduled; a copy with a lower hop than the
  one recorded in Redis is a leftover of a crash and is dropped;
- ``qi.not_before``: epoch milliseconds before which it must not be tried;
- ``qi.first_attempt_at``: epoch milliseconds of the first attempt (the age budget);
- ``qi.errors``: the error history, JSON;
- ``qi.retry.kind``: ``retry``, ``deferred`` or ``parked``.

Dead letters add ``qi.error.class``, ``qi.error.reason``, ``qi.error.status`` and
``qi.original.topic|partition|offset`` (Kafka Connect's ``__connect.errors.*`` idea).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import TypeAdapter, ValidationError

from processors.deliveries.models import AttemptError

__all__ = [
    "REQUIRED_HEADERS",
    "DeliveryItem",
    "EnvelopeError",
    "item_from_record",
    "retry_headers",
]

REQUIRED_HEADERS: Final = (
    "qi.delivery_id",
    "qi.tenant_id",
    "qi.connector",
    "qi.connection_id",
    "qi.event_type",
    "qi.event_id",
    "qi.idempotency_key",
    "qi.correlation_id",
    "qi.entity_id",
    "qi.entity_version",
    "qi.contract",
    "qi.schema_version",
)
_RETRY_HEADERS: Final = frozenset(
    {"qi.attempt", "qi.hop", "qi.not_before", "qi.first_attempt_at", "qi.errors", "qi.retry.kind"}
)
_ERRORS = TypeAdapter(list[AttemptError])


class EnvelopeError(ValueError):
    """A record on an export or retry topic without a usable delivery envelope."""


@dataclass(slots=True)
class DeliveryItem:
    """One delivery in flight: the encoded contract, its envelope and its history."""

    value: bytes
    headers: dict[str, str]
    source_topic: str
    source_partition: int
    source_offset: int
    attempts_made: int = 0
    hop: int = 0
    not_before_ms: int = 0
    first_attempt_at_ms: int | None = None
    errors: list[AttemptError] = field(default_factory=list)

    @property
    def delivery_id(self) -> str:
        return self.headers["qi.delivery_id"]

    @property
    def tenant_id(self) -> str:
        return self.headers["qi.tenant_id"]

    @property
    def connection_id(self) -> str:
        return self.headers["qi.connection_id"]

    @property
    def idempotency_key(self) -> str:
        return self.headers["qi.idempotency_key"]

    @property
    def entity_version(self) -> int:
        return int(self.headers["qi.entity_version"])

    @property
    def version_field(self) -> str:
        """The stale-version guard's field: the contract family and the entity id."""
        return f"{self.headers['qi.contract']}:{self.headers['qi.entity_id']}"

    @property
    def replay_id(self) -> str | None:
        return self.headers.get("qi.replay_id")

    @property
    def source(self) -> str:
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    def envelope_headers(self) -> list[tuple[str, bytes]]:
        """The router's envelope, without the retry bookkeeping."""
        return [(k, v.encode()) for k, v in self.headers.items() if k not in _RETRY_HEADERS]


def _int(headers: Mapping[str, str], name: str, default: int) -> int:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"header {name} is not an integer"
        raise EnvelopeError(msg) from exc


def item_from_record(
    *, value: bytes | None, headers: Mapping[str, str], topic: str, partition: int, offset: int
) -> DeliveryItem:
    """Build an item from a consumed record; raises :class:`EnvelopeError` if unusable."""
    if not value:
        raise EnvelopeError("record has no value")
    missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
    if missing:
        msg = f"missing envelope headers: {', '.join(missing)}"
        raise EnvelopeError(msg)
    _int(headers, "qi.entity_version", 0)
    errors: list[AttemptError] = []
    if "qi.errors" in headers:
        try:
            errors = _ERRORS.validate_json(headers["qi.errors"])
        except ValidationError as exc:
            raise EnvelopeError("header qi.errors is not an error history") from exc
    first = headers.get("qi.first_attempt_at")
    return DeliveryItem(
        value=value,
        headers=dict(headers),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        attempts_made=_int(headers, "qi.attempt", 0),
        hop=_int(headers, "qi.hop", 0),
        not_before_ms=_int(headers, "qi.not_before", 0),
        first_attempt_at_ms=None if first is None else _int(headers, "qi.first_attempt_at", 0),
        errors=errors,
    )


def retry_headers(
    item: DeliveryItem, *, kind: str, attempts_made: int, not_before_ms: int, now_ms: int
) -> list[tuple[str, bytes]]:
    """The envelope for the next hop of ``item`` on the retry topic."""
    first = item.first_attempt_at_ms if item.first_attempt_at_ms is not None else now_ms
    extra = {
        "qi.attempt": str(attempts_made),
        "qi.hop": str(item.hop + 1),
        "qi.not_before": str(not_before_ms),
        "qi.first_attempt_at": str(first),
        "qi.errors": json.dumps([e.model_dump(mode="json") for e in item.errors[-20:]]),
        "qi.retry.kind": kind,
    }
    return item.envelope_headers() + [(k, v.encode()) for k, v in extra.items()]
