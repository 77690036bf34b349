"""The routing service: a batch of raw domain-event records in, the records to produce out.

Called by the routing agent once per batch (``stream.take_events``). It never raises for bad
input: every record either yields exports, is skipped with a counted reason (tenant not on the
allowlist, no connection takes it), or yields one dead-letter record for
``integrations.dlq.invalid-events``. That holds for the unforeseen too: any exception raised
while one record is parsed, validated, mapped or encoded dead-letters that record with reason
``internal_error`` and a detail naming the step and the exception class (never its message,
which may quote the input). The only exceptions :meth:`RoutingService.route` lets out are
those of the connection lookup (Redis); the agent retries the batch on them.

Export records: key ``tenant_id``; value the contract, Avro single-object encoded; headers the
delivery envelope (``qi.*``: delivery id, connector, connection, event type and id, idempotency
key, correlation id, entity id and version, contract family and version, source coordinates).

Delivery modes: a connection produces one export per destination of its delivery mode
(:func:`~processors.routing.destinations.export_destinations`): a connection in ``both`` mode
gives one export to its own connector's topic and one to the topic of the connector that
carries webhook copies, with distinct idempotency keys and delivery ids.
``qi.connector`` names the delivering connector (the export topic); ``qi.owner_connector``
names the connector of the connection record that owns the export, whose settings the
delivery engine loads (they differ only for a connection's webhook copy).

Dead-letter records carry the reason and detail and the original coordinates as headers
(``qi.error.*``, ``qi.original.*``, after Kafka Connect's ``__connect.errors.*``), and the
original value when ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` is on (the default: an operator needs it
to fix and republish).

A dead letter is bounded, so that it can always be produced: it copies the original key and
value only while together they fit in ``QI_ROUTING_DLQ_MAX_PAYLOAD_BYTES`` (default 512 KiB,
half of Kafka's default 1 MB message limit); a larger record's value is left out (and its key
too, when the key alone is over the limit), with ``qi.payload_omitted: too_large``. Every dead
letter names the original sizes in ``qi.original.key_bytes`` and ``qi.original.value_bytes``;
the original stays in the source topic at the coordinates in ``qi.original.*``. The detail is
cut at :data:`MAX_DETAIL_CHARS` characters. When the producer still refuses a record as too
large (a topic whose ``max.message.bytes`` is lower), :meth:`RoutingService.refused_as_too_large`
gives what to produce instead: for a dead letter, the same dead letter without key or value
(``qi.payload_omitted: refused_too_large``); for an export, a dead letter of its source record
with reason ``oversized``. The agent never retries a too-large record as it is.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from processors import metrics
from processors.contracts import ContractEncodingError, ContractRegistry, ContractSchema, encode
from processors.domain.events import DomainEvent
from processors.records import ConsumedRecord, Headers, ProducedRecord
from processors.routing.destinations import export_destinations
from processors.routing.idempotency import delivery_id_for
from processors.routing.mapping import EVENT_FAMILIES, map_event
from processors.routing.parsing import InvalidEventError, InvalidReason, parse_domain_event
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, Connector, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = [
    "MAX_DETAIL_CHARS",
    "Export",
    "IncomingRecord",
    "OutgoingRecord",
    "RoutingReport",
    "RoutingService",
    "connection_exports",
    "delivery_envelope",
]

logger = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 1_000
"""The longest ``qi.error.detail`` a dead letter carries."""
_OMITTED = "qi.payload_omitted"
_REFUSED = b"refused_too_large"


IncomingRecord = ConsumedRecord
"""One record of ``queast.domain-events`` with its coordinates."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord(ProducedRecord):
    """One record to produce, keyed by tenant."""

    source: IncomingRecord | None = None
    """The input record an export or a dead letter of the routing service comes from."""


@dataclass(slots=True)
class RoutingReport:
    """What one batch gave: records to produce and the counts behind them."""

    records: list[OutgoingRecord] = field(default_factory=list)
    exports: int = 0
    invalid: int = 0
    skipped: int = 0


class RoutingService:
    """Validates, maps and encodes; the agent produces what it returns."""

    def __init__(
        self,
        *,
        topics: TopicMap,
        connections: ConnectionRepository,
        registry: ContractRegistry,
        settings: RoutingSettings,
    ) -> None:
        self._topics = topics
        self._connections = connections
        self._registry = registry
        self._settings = settings

    async def route(self, batch: Sequence[IncomingRecord]) -> RoutingReport:
        """Route one batch; one Redis round trip for all its tenants."""
        report = RoutingReport()
        valid: list[tuple[IncomingRecord, DomainEvent]] = []
        for incoming in batch:
            metrics.EVENTS_CONSUMED.inc()
            try:
                event = parse_domain_event(
                    incoming.key, incoming.value, max_bytes=self._settings.max_event_bytes
                )
            except InvalidEventError as exc:
                self._dead_letter(report, incoming, exc)
                continue
            except Exception as exc:  # one record's failure must not stop the batch
                self._dead_letter(report, incoming, _internal_error("parsing", exc, None))
                continue
            valid.append((incoming, event))
        routing = await self._connections.routing_for(e.envelope.tenant_id for _, e in valid)
        for incoming, event in valid:
            tenant = routing[event.envelope.tenant_id]
            if not tenant.allowlisted:
                self._skip(report, "tenant_not_allowlisted")
                continue
            if tenant.unreadable:
                unreadable = InvalidEventError(
                    InvalidReason.CONFIGURATION_UNREADABLE,
                    "stored connection record does not validate: " + ", ".join(tenant.unreadable),
                    tenant_id=tenant.tenant_id,
                )
                self._dead_letter(report, incoming, unreadable)
                continue
            try:
                produced = self._exports(incoming, event, tenant)
            except InvalidEventError as exc:
                self._dead_letter(report, incoming, exc)
                continue
            except Exception as exc:  # one record's failure must not stop the batch
                error = _internal_error("mapping", exc, event.envelope.tenant_id)
                self._dead_letter(report, incoming, error)
                continue
            event_type = event.envelope.event_type.value
            metrics.EVENTS_MAPPED.labels(event_type).inc()
            if not produced:
                self._skip(report, "no_connection_takes_it")
                continue
            for record in produced:
                metrics.EXPORTS_PRODUCED.labels(_connector_of(record), event_type).inc()
                report.records.append(record)
            report.exports += len(produced)
        return report

    def refused_as_too_large(self, record: OutgoingRecord) -> OutgoingRecord | None:
        """What to produce instead of ``record``, which the producer refused as too large.

        ``None`` when there is nothing smaller left to produce (a dead letter without key or
        value refused again): the caller logs it and goes on.
        """
        if record.topic != self._topics.invalid_events:
            if record.source is None:
                return None
            error = InvalidEventError(
                InvalidReason.OVERSIZED,
                f"export of {len(record.value)} bytes refused by the producer as too large",
                tenant_id=_header_text(record.headers, "qi.tenant_id"),
            )
            report = RoutingReport()
            self._dead_letter(report, record.source, error)
            return report.records[0]
        if (_OMITTED, _REFUSED) in record.headers:
            return None
        kept = tuple(
            (name, value)
            for name, value in record.headers
            if name not in {_OMITTED, "qi.payload_included"}
        )
        return replace(
            record,
            key=None,
            value=b"",
            headers=(*kept, ("qi.payload_included", b"false"), (_OMITTED, _REFUSED)),
        )

    def _exports(
        self, incoming: IncomingRecord, event: DomainEvent, tenant: TenantRouting
    ) -> list[OutgoingRecord]:
        """One export per connection and destination that takes the event.

        Raises :class:`InvalidEventError` when the event does not fit its contract.
        """
        schema = self._registry.latest(EVENT_FAMILIES[event.envelope.event_type])
        source = f"{incoming.topic}:{incoming.partition}:{incoming.offset}"
        produced: list[OutgoingRecord] = []
        for connection in tenant.connections:
            try:
                exports = connection_exports(event, connection, schema, source=source)
            except ContractEncodingError as exc:
                raise InvalidEventError(
                    InvalidReason.CONTRACT_VIOLATION,
                    str(exc),
                    tenant_id=event.envelope.tenant_id,
                ) from exc
            produced.extend(
                OutgoingRecord(
                    topic=self._topics.exports(export.destination.value),
                    key=event.envelope.tenant_id.encode(),
                    value=export.value,
                    headers=tuple(
                        (name, value.encode()) for name, value in export.envelope.items()
                    ),
                    source=incoming,
                )
                for export in exports
            )
        return produced

    def _skip(self, report: RoutingReport, reason: str) -> None:
        metrics.EVENTS_SKIPPED.labels(reason).inc()
        report.skipped += 1

    def _dead_letter(
        self, report: RoutingReport, incoming: IncomingRecord, error: InvalidEventError
    ) -> None:
        metrics.EVENTS_INVALID.labels(error.reason.value).inc()
        logger.warning(
            "routing.event.invalid",
            extra={
                "reason": error.reason.value,
                "detail": error.detail,
                "tenant_id": error.tenant_id,
                "topic": incoming.topic,
                "partition": incoming.partition,
                "offset": incoming.offset,
            },
        )
        report.records.append(self._dead_letter_record(incoming, error))
        report.invalid += 1

    def _dead_letter_record(
        self, incoming: IncomingRecord, error: InvalidEventError
    ) -> OutgoingRecord:
        key_bytes = len(incoming.key) if incoming.key is not None else 0
        value_bytes = len(incoming.value) if incoming.value is not None else 0
        limit = self._settings.dlq_max_payload_bytes
        headers: list[tuple[str, bytes]] = [
            ("qi.error.reason", error.reason.value.encode()),
            ("qi.error.detail", _encode_text(error.detail[:MAX_DETAIL_CHARS])),
            ("qi.original.topic", _encode_text(incoming.topic)),
            ("qi.original.partition", str(incoming.partition).encode()),
            ("qi.original.offset", str(incoming.offset).encode()),
            ("qi.original.key_bytes", str(key_bytes).encode()),
            ("qi.original.value_bytes", str(value_bytes).encode()),
        ]
        if error.tenant_id is not None:
            headers.append(("qi.tenant_id", _encode_text(error.tenant_id)))
        wanted = self._settings.dlq_include_payload and incoming.value is not None
        fits = key_bytes + value_bytes <= limit
        include = wanted and fits
        headers.append(("qi.payload_included", b"true" if include else b"false"))
        if wanted and not fits:
            headers.append((_OMITTED, b"too_large"))
        value = incoming.value if include and incoming.value is not None else b""
        return OutgoingRecord(
            topic=self._topics.invalid_events,
            key=incoming.key if key_bytes <= limit else None,
            value=value,
            headers=tuple(headers),
            source=incoming,
        )


def _encode_text(text: str) -> bytes:
    """UTF-8, with anything unencodable (a lone surrogate) escaped rather than raising."""
    return text.encode("utf-8", errors="backslashreplace")


def _header_text(headers: Headers, name: str) -> str | None:
    for header, value in headers:
        if header == name:
            return value.decode("utf-8", errors="replace")
    return None


def _connector_of(record: OutgoingRecord) -> str:
    return _header_text(record.headers, "qi.connector") or "unknown"


def _internal_error(step: str, exc: Exception, tenant_id: str | None) -> InvalidEventError:
    """A dead-letter reason for an unforeseen exception: the step and class, never the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"
    logger.error(
        "routing.event.failed",
        extra={"step": step, "error": type(exc).__name__, "where": where, "tenant_id": tenant_id},
    )
    return InvalidEventError(
        InvalidReason.INTERNAL_ERROR, f"{step} raised {type(exc).__name__}", tenant_id=tenant_id
    )


@dataclass(frozen=True, slots=True)
class Export:
    """One export of an event to one destination, before it is produced."""

    destination: Connector
    value: bytes
    """The contract record, Avro single-object encoded."""
    envelope: dict[str, str]
    """The delivery envelope (:func:`delivery_envelope`)."""


def connection_exports(
    event: DomainEvent, connection: ConnectionRecord, schema: ContractSchema, *, source: str
) -> list[Export]:
    """The exports of ``event`` through ``connection``: one per destination of its delivery
    mode, none when the connection does not take the event.

    Raises :class:`~processors.contracts.ContractEncodingError` when a mapped record does not
    fit ``schema``.
    """
    exports: list[Export] = []
    for destination in export_destinations(connection):
        mapped = map_event(
            event, connection, schema_version=schema.schema_version, destination=destination
        )
        if mapped is None:
            break  # the connection does not take the event, whatever the destination
        envelope = delivery_envelope(
            event,
            connection,
            mapped.idempotency_key,
            destination=destination,
            family=schema.family.value,
            schema_version=schema.schema_version,
            source=source,
        )
        exports.append(Export(destination, encode(schema, mapped.record), envelope))
    return exports


def delivery_envelope(
    event: DomainEvent,
    connection: ConnectionRecord,
    key: str,
    *,
    destination: Connector,
    family: str,
    schema_version: str,
    source: str,
) -> dict[str, str]:
    """The delivery envelope (``qi.*`` headers) of one export of ``event`` (see the module)."""
    envelope = event.envelope
    return {
        "qi.delivery_id": delivery_id_for(key),
        "qi.tenant_id": envelope.tenant_id,
        "qi.connector": destination.value,
        "qi.owner_connector": connection.connector.value,
        "qi.connection_id": connection.connection_id,
        "qi.event_type": envelope.event_type.value,
        "qi.event_id": str(envelope.event_id),
        "qi.idempotency_key": key,
        "qi.correlation_id": event.correlation_id,
        "qi.entity_id": event.entity.entity_id,
        "qi.entity_version": str(event.entity.version),
        "qi.contract": family,
        "qi.schema_version": schema_version,
        "qi.source": source,
    }
