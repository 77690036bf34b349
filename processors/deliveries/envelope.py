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
- ``qi.retry.kind``: ``retry``, ``deferred``, ``parked`` or ``waiting`` (a failing destination,
  see :mod:`processors.deliveries.breaker`).

A record sent again by an operator's run (:mod:`processors.operations.reinject`) carries
``qi.replay_id`` (the run's id, copied into every delivery record of it) and ``qi.run.kind``:
``replay`` re-delivers an artifact even when its key was delivered before (the stale-version
guard still applies); ``redrive`` (a dead letter sent again), ``release`` (a record held for a
match review, released by the decision) and ``backfill`` never send a delivered key again. A
run's copy has its own delivery id (:func:`~processors.routing.idempotency.delivery_id_for`),
so its hops never meet the original's; it keeps the artifact's idempotency key.

Dead letters add ``qi.error.class``, ``qi.error.reason``, ``qi.error.status`` and
``qi.original.topic|partition|offset`` (Kafka Connect's ``__connect.errors.*`` idea).

Owner and destination: ``qi.connector`` is the connector that delivers the export (its topic);
``qi.owner_connector`` is the connector of the connection record that owns it. They differ for
a connection's webhook copy (delivery mode ``webhook`` or ``both``, see
:mod:`processors.routing.destinations`); both must name a registered connector. Exports written
before the header existed lack it and are owned by their delivering connector. A delivery's
*destination* is keyed by :func:`destination_key`: the bare ``connection_id`` when the
connection's own connector delivers it (the keys used before delivery modes, kept so stored
state stays valid), else ``{connection_id}:{connector}``. The engine keeps lanes and connection
health (``needs_reauth``, ``gone``) per destination, and :attr:`DeliveryItem.version_field`
carries the delivering connector for a copy, so a partner's health or delivered versions never
govern the connection's webhook copy, nor the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import TypeAdapter, ValidationError

from connectors.registry import registered
from processors.deliveries.models import AttemptError

__all__ = [
    "REQUIRED_HEADERS",
    "RUN_KINDS",
    "DeliveryItem",
    "EnvelopeError",
    "destination_key",
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
RUN_KINDS: Final = ("replay", "redrive", "release", "backfill")
"""What an operator's run does (``qi.run.kind``); only a ``replay`` re-sends a delivered key."""
_RETRY_HEADERS: Final = frozenset(
    {"qi.attempt", "qi.hop", "qi.not_before", "qi.first_attempt_at", "qi.errors", "qi.retry.kind"}
)
_ERRORS = TypeAdapter(list[AttemptError])


class EnvelopeError(ValueError):
    """A record on an export or retry topic without a usable delivery envelope."""


def destination_key(connection_id: str, *, owner_connector: str, connector: str) -> str:
    """The key of one destination of a connection: the connection delivered by ``connector``.

    ``connection_id`` when ``connector`` is the connection's own (``owner_connector``), else
    ``{connection_id}:{connector}`` (connection ids never contain ``:``).
    """
    return connection_id if owner_connector == connector else f"{connection_id}:{connector}"


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
    def connector(self) -> str:
        """The connector that delivers this export (its topic's)."""
        return self.headers["qi.connector"]

    @property
    def owner_connector(self) -> str:
        """The connector of the connection record that owns this export."""
        return self.headers.get("qi.owner_connector") or self.connector

    @property
    def destination_key(self) -> str:
        """Lanes and connection health are kept per destination; see :func:`destination_key`."""
        return destination_key(
            self.connection_id, owner_connector=self.owner_connector, connector=self.connector
        )

    @property
    def idempotency_key(self) -> str:
        return self.headers["qi.idempotency_key"]

    @property
    def entity_version(self) -> int:
        return int(self.headers["qi.entity_version"])

    @property
    def version_field(self) -> str:
        """The stale-version guard's field: the contract family and the entity id.

        A copy delivered by another connector than the connection's own is prefixed with that
        connector (``webhook|company:co_1``): each destination has its own guard.
        """
        field = f"{self.headers['qi.contract']}:{self.headers['qi.entity_id']}"
        if self.owner_connector == self.connector:
            return field
        return f"{self.connector}|{field}"

    @property
    def replay_id(self) -> str | None:
        return self.headers.get("qi.replay_id")

    @property
    def run_kind(self) -> str | None:
        """The operator run that sent this copy (``qi.run.kind``), ``None`` for live traffic.

        A copy with a replay id and no kind is a replay (copies written before the kind).
        """
        if self.replay_id is None:
            return None
        return self.headers.get("qi.run.kind") or "replay"

    @property
    def skips_delivered(self) -> bool:
        """Whether a key delivered before is skipped: always, except in a replay."""
        return self.run_kind != "replay"

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
    if headers.get("qi.run.kind") and headers["qi.run.kind"] not in RUN_KINDS:
        raise EnvelopeError("header qi.run.kind names no known run")
    if headers.get("qi.owner_connector"):  # a copy names both connectors; check them
        for name in ("qi.owner_connector", "qi.connector"):
            if headers[name] not in registered():
                msg = f"header {name} names no known connector"
                raise EnvelopeError(msg)
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
