"""Domain events to contract records: pure functions, no I/O.

One event becomes one contract record per connection that takes it and per destination of the
connection's delivery mode (:mod:`processors.routing.destinations`). The record carries the
common header (``event_type``, ``schema_version``, ``occurred_at``, ``idempotency_key``,
``tenant_id``, ``connection_id``, ``correlation_id``, ``event_id``, ``entity_version``) and the
entity in the shape of its contract family:

- companies and people map field for field; deletions carry the id and ``deleted = true``;
- signals keep their reasons and evidence references exactly as given (nothing is added to the
  causal model); technology tags travel only under ``decorations`` and play no part in whether a
  signal is exported; every signal carries ``contract_mode`` and ``contract_version``;
- job ads become ``job_ad_evidence`` records, never signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.contracts import ContractFamily
from processors.domain.events import (
    CompanyData,
    DomainEvent,
    EventType,
    JobAdData,
    PersonData,
    SignalData,
)
from processors.routing.destinations import destination_label
from processors.routing.idempotency import idempotency_key
from processors.tenants.models import ConnectionRecord, Connector

__all__ = ["EVENT_FAMILIES", "MappedRecord", "format_timestamp", "map_event"]

EVENT_FAMILIES: dict[EventType, ContractFamily] = {
    EventType.COMPANY_UPSERTED: ContractFamily.COMPANY,
    EventType.COMPANY_DELETED: ContractFamily.COMPANY,
    EventType.PERSON_UPSERTED: ContractFamily.PERSON,
    EventType.PERSON_DELETED: ContractFamily.PERSON,
    EventType.SIGNAL_EMITTED: ContractFamily.SIGNAL,
    EventType.JOB_AD_PUBLISHED: ContractFamily.JOB_AD_EVIDENCE,
}
"""The contract family of each event type. Job ads are evidence, never signals."""

_DELETIONS = frozenset({EventType.COMPANY_DELETED, EventType.PERSON_DELETED})


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """A contract record for one connection, before encoding."""

    family: ContractFamily
    record: dict[str, Any]
    idempotency_key: str
    entity_id: str
    entity_version: int


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, milliseconds only when present."""
    value = value.astimezone(UTC)
    # Not strftime: its %Y gives "1", not "0001", for the first years of the calendar.
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


_COMPANY_FIELDS = (
    "company_id",
    "name",
    "domain",
    "domains",
    "website",
    "linkedin_url",
    "industry",
    "employee_count",
    "country",
)
_PERSON_FIELDS = (
    "person_id",
    "company_id",
    "full_name",
    "first_name",
    "last_name",
    "email",
    "emails",
    "linkedin_url",
    "title",
)


def _field_for_field(entity: CompanyData | PersonData, names: tuple[str, ...]) -> dict[str, Any]:
    """The entity's ``names`` under the same names (sequences as lists), not deleted."""
    record: dict[str, Any] = {}
    for name in names:
        value = getattr(entity, name)
        record[name] = list(value) if isinstance(value, tuple | list) else value
    record["deleted"] = False
    return record


def _signal(entity: SignalData) -> dict[str, Any]:
    return {
        "signal_id": entity.signal_id,
        "company_id": entity.company_id,
        "person_ids": list(entity.person_ids),
        "signal_type": entity.signal_type,
        "contract_mode": entity.contract_mode.value,
        "contract_version": entity.contract_version,
        "title": entity.title,
        "summary": entity.summary,
        "score": entity.score,
        "reasons": [
            {"code": r.code, "description": r.description, "evidence_ids": list(r.evidence_ids)}
            for r in entity.reasons
        ],
        "evidence": [
            {"kind": e.kind, "id": e.id, "url": e.url, "title": e.title} for e in entity.evidence
        ],
        "decorations": {"technology_tags": list(entity.decorations.technology_tags)},
        "detected_at": format_timestamp(entity.detected_at),
    }


def _job_ad(entity: JobAdData) -> dict[str, Any]:
    return {
        "job_ad_id": entity.job_ad_id,
        "company_id": entity.company_id,
        "title": entity.title,
        "url": entity.url,
        "location": entity.location,
        "posted_at": None if entity.posted_at is None else format_timestamp(entity.posted_at),
    }


def _deletion(event_type: EventType, entity_id: str) -> dict[str, Any]:
    if event_type is EventType.COMPANY_DELETED:
        return {"company_id": entity_id, "deleted": True}
    return {"person_id": entity_id, "deleted": True}


def _body(event: DomainEvent) -> dict[str, Any]:
    entity = event.entity
    event_type = event.envelope.event_type
    if event_type in _DELETIONS:
        return _deletion(event_type, entity.entity_id)
    if isinstance(entity, CompanyData):
        return _field_for_field(entity, _COMPANY_FIELDS)
    if isinstance(entity, PersonData):
        return _field_for_field(entity, _PERSON_FIELDS)
    if isinstance(entity, SignalData):
        return _signal(entity)
    if isinstance(entity, JobAdData):
        return _job_ad(entity)
    msg = f"no mapping for {type(entity).__name__}"
    raise TypeError(msg)


def map_event(
    event: DomainEvent,
    connection: ConnectionRecord,
    *,
    schema_version: str,
    destination: Connector | None = None,
) -> MappedRecord | None:
    """The contract record for ``connection``, or ``None`` when the connection does not take it.

    ``schema_version`` is the version of the contract the record will be encoded with.
    ``destination`` is the connector that delivers it (default: the connection's own); a
    partner connection's webhook copy gets its own idempotency key
    (:mod:`processors.routing.destinations`).
    """
    envelope = event.envelope
    entity = event.entity
    contract_mode = entity.contract_mode if isinstance(entity, SignalData) else None
    if not connection.exports(envelope.event_type, contract_mode=contract_mode):
        return None
    key = idempotency_key(
        tenant_id=envelope.tenant_id,
        connector=connection.connector.value,
        connection_id=connection.connection_id,
        event_type=envelope.event_type.value,
        entity_id=entity.entity_id,
        entity_version=entity.version,
        destination=destination_label(connection, destination or connection.connector),
    )
    record: dict[str, Any] = {
        "event_type": envelope.event_type.value,
        "schema_version": schema_version,
        "occurred_at": format_timestamp(envelope.occurred_at),
        "idempotency_key": key,
        "tenant_id": envelope.tenant_id,
        "connection_id": connection.connection_id,
        "correlation_id": event.correlation_id,
        "event_id": str(envelope.event_id),
        "entity_version": entity.version,
    }
    record.update(_body(event))
    return MappedRecord(
        family=EVENT_FAMILIES[envelope.event_type],
        record=record,
        idempotency_key=key,
        entity_id=entity.entity_id,
        entity_version=entity.version,
    )
