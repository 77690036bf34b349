"""The routing service: a batch of raw domain-event records in, the records to produce out.

Called by the routing agent once per batch (``stream.take_events``). It never raises for bad
input: every record either yields exports, is skipped with a counted reason (tenant not on the
allowlist, no connection takes it), or yields one dead-letter record for
``integrations.dlq.invalid-events``. It raises only when Redis is unreachable, and then the
agent crashes without committing, so the batch is consumed again.

Export records: key ``tenant_id``; value the contract, Avro single-object encoded; headers the
delivery envelope (``qi.*``: delivery id, connector, connection, event type and id, idempotency
key, correlation id, entity id and version, contract family and version, source coordinates).

Delivery modes: a connection produces one export per destination of its delivery mode
(:func:`~processors.routing.destinations.export_destinations`): a HubSpot or Pipedrive
connection in ``both`` mode gives one export to its partner topic and one to
``integrations.exports.webhook``, with distinct idempotency keys and delivery ids.
``qi.connector`` names the delivering connector (the export topic); ``qi.owner_connector``
names the connector of the connection record that owns the export, whose settings the
delivery engine loads (they differ only for a partner connection's webhook copy).

Dead-letter records carry the reason and detail and the original coordinates as headers
(``qi.error.*``, ``qi.original.*``, after Kafka Connect's ``__connect.errors.*``), and the
original value when ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` is on (the default: an operator needs it
to fix and republish).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from processors import metrics
from processors.contracts import ContractEncodingError, ContractRegistry, encode
from processors.domain.events import DomainEvent
from processors.routing.destinations import export_destinations
from processors.routing.idempotency import delivery_id_for
from processors.routing.mapping import EVENT_FAMILIES, map_event
from processors.routing.parsing import InvalidEventError, InvalidReason, parse_domain_event
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, Connector, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["IncomingRecord", "OutgoingRecord", "RoutingReport", "RoutingService"]

logger = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One record of ``queast.domain-events`` with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One record to produce, keyed by tenant."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


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
            valid.append((incoming, event))
        routing = await self._connections.routing_for(e.envelope.tenant_id for _, e in valid)
        for incoming, event in valid:
            self._route_event(report, incoming, event, routing[event.envelope.tenant_id])
        return report

    def _route_event(
        self,
        report: RoutingReport,
        incoming: IncomingRecord,
        event: DomainEvent,
        tenant: TenantRouting,
    ) -> None:
        event_type = event.envelope.event_type.value
        if not tenant.allowlisted:
            self._skip(report, "tenant_not_allowlisted")
            return
        schema = self._registry.latest(EVENT_FAMILIES[event.envelope.event_type])
        produced: list[tuple[str, OutgoingRecord]] = []
        for connection in tenant.connections:
            for destination in export_destinations(connection):
                mapped = map_event(
                    event,
                    connection,
                    schema_version=schema.schema_version,
                    destination=destination,
                )
                if mapped is None:
                    break  # the connection does not take the event, whatever the destination
                try:
                    value = encode(schema, mapped.record)
                except ContractEncodingError as exc:
                    error = InvalidEventError(
                        InvalidReason.CONTRACT_VIOLATION,
                        str(exc),
                        tenant_id=event.envelope.tenant_id,
                    )
                    self._dead_letter(report, incoming, error)
                    return
                connector = destination.value
                headers = _delivery_headers(
                    incoming,
                    event,
                    connection,
                    mapped.idempotency_key,
                    destination=destination,
                    family=schema.family.value,
                    schema_version=schema.schema_version,
                )
                produced.append(
                    (
                        connector,
                        OutgoingRecord(
                            topic=self._topics.exports(connector),
                            key=event.envelope.tenant_id.encode(),
                            value=value,
                            headers=headers,
                        ),
                    )
                )
        metrics.EVENTS_MAPPED.labels(event_type).inc()
        if not produced:
            self._skip(report, "no_connection_takes_it")
            return
        for connector, record in produced:
            metrics.EXPORTS_PRODUCED.labels(connector, event_type).inc()
            report.records.append(record)
        report.exports += len(produced)

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
        headers: list[tuple[str, bytes]] = [
            ("qi.error.reason", error.reason.value.encode()),
            ("qi.error.detail", error.detail.encode()),
            ("qi.original.topic", incoming.topic.encode()),
            ("qi.original.partition", str(incoming.partition).encode()),
            ("qi.original.offset", str(incoming.offset).encode()),
        ]
        if error.tenant_id is not None:
            headers.append(("qi.tenant_id", error.tenant_id.encode()))
        include = self._settings.dlq_include_payload and incoming.value is not None
        value = incoming.value if include and incoming.value is not None else b""
        headers.append(("qi.payload_included", b"true" if include else b"false"))
        report.records.append(
            OutgoingRecord(
                topic=self._topics.invalid_events,
                key=incoming.key,
                value=value,
                headers=tuple(headers),
            )
        )
        report.invalid += 1


def _delivery_headers(
    incoming: IncomingRecord,
    event: DomainEvent,
    connection: ConnectionRecord,
    key: str,
    *,
    destination: Connector,
    family: str,
    schema_version: str,
) -> Headers:
    envelope = event.envelope
    pairs = {
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
        "qi.source": f"{incoming.topic}:{incoming.partition}:{incoming.offset}",
    }
    return tuple((name, value.encode()) for name, value in pairs.items())
