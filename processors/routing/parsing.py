"""Turning raw Kafka records from ``queast.domain-events`` into validated domain events.

Every way a record can be bad has an :class:`InvalidReason`; :func:`parse_domain_event` raises
:class:`InvalidEventError` with that reason and a detail that names fields, never their values
(details end up in logs and dead-letter headers).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from processors.domain.events import (
    EVENT_ENTITY_MODELS,
    ContractMode,
    DomainEvent,
    DomainEventEnvelope,
    EventType,
    SignalData,
)

__all__ = ["InvalidEventError", "InvalidReason", "parse_domain_event"]

SUPPORTED_MAJOR_VERSION = 1
_EVENT_TYPES = frozenset(t.value for t in EventType)


class InvalidReason(StrEnum):
    """Why an input record was dead-lettered to ``integrations.dlq.invalid-events``."""

    OVERSIZED = "oversized"
    EMPTY = "empty"
    UNPARSEABLE = "unparseable"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TENANT = "missing_tenant"
    KEY_MISMATCH = "key_mismatch"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    VALIDATION_FAILED = "validation_failed"
    CONTRACT_VIOLATION = "contract_violation"


class InvalidEventError(Exception):
    """An input record that cannot be routed; it is dead-lettered, never retried."""

    def __init__(self, reason: InvalidReason, detail: str, *, tenant_id: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.tenant_id = tenant_id


def _describe(exc: ValidationError, *, prefix: str = "", limit: int = 5) -> str:
    """Field locations and messages only: pydantic's ``input`` (a value) is left out."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        location = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        parts.append(f"{location or '<root>'}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _tenant_of(document: dict[str, Any]) -> str | None:
    tenant = document.get("tenant_id")
    return tenant if isinstance(tenant, str) and tenant else None


def _check_strict_signal(signal: SignalData, tenant_id: str) -> None:
    """Actionable Signals follow the locked causal model: every reason cites known evidence."""
    if signal.contract_mode is not ContractMode.STRICT:
        return
    known = {evidence.id for evidence in signal.evidence}
    for index, reason in enumerate(signal.reasons):
        unknown = [eid for eid in reason.evidence_ids if eid not in known]
        if unknown:
            raise InvalidEventError(
                InvalidReason.CONTRACT_VIOLATION,
                f"data.reasons.{index}: cites {len(unknown)} evidence id(s) not in data.evidence",
                tenant_id=tenant_id,
            )


def parse_domain_event(key: bytes | None, value: bytes | None, *, max_bytes: int) -> DomainEvent:
    """Validate one record of ``queast.domain-events``.

    Raises :class:`InvalidEventError` for every kind of bad input; never anything else.
    The record key must equal the envelope's ``tenant_id``: a record keyed for one tenant that
    claims another would land on the wrong partition, or be a forgery, and is refused.
    """
    if value is None or not value:
        raise InvalidEventError(InvalidReason.EMPTY, "record has no value")
    if len(value) > max_bytes:
        raise InvalidEventError(
            InvalidReason.OVERSIZED, f"value is {len(value)} bytes, limit {max_bytes}"
        )
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(
            InvalidReason.UNPARSEABLE, f"not JSON: {type(exc).__name__}"
        ) from exc
    except RecursionError as exc:
        raise InvalidEventError(InvalidReason.UNPARSEABLE, "JSON nested too deeply") from exc
    if not isinstance(document, dict):
        raise InvalidEventError(
            InvalidReason.NOT_AN_OBJECT, f"top level is {type(document).__name__}, not an object"
        )
    tenant_id = _tenant_of(document)
    if tenant_id is None:
        raise InvalidEventError(InvalidReason.MISSING_TENANT, "tenant_id is missing or empty")
    if key is None or key.decode("utf-8", errors="replace") != tenant_id:
        raise InvalidEventError(
            InvalidReason.KEY_MISMATCH,
            "record key is missing" if key is None else "record key differs from tenant_id",
            tenant_id=tenant_id,
        )
    event_type = document.get("event_type")
    if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
        raise InvalidEventError(
            InvalidReason.UNKNOWN_EVENT_TYPE,
            "event_type is not one of the known types",
            tenant_id=tenant_id,
        )
    try:
        envelope = DomainEventEnvelope.model_validate(document)
    except ValidationError as exc:
        raise InvalidEventError(
            InvalidReason.VALIDATION_FAILED, _describe(exc), tenant_id=tenant_id
        ) from exc
    if envelope.major_version != SUPPORTED_MAJOR_VERSION:
        raise InvalidEventError(
            InvalidReason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {envelope.schema_version} (supported: {SUPPORTED_MAJOR_VERSION}.x)",
            tenant_id=tenant_id,
        )
    model = EVENT_ENTITY_MODELS[envelope.event_type]
    try:
        entity = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEventError(
            InvalidReason.VALIDATION_FAILED, _describe(exc, prefix="data"), tenant_id=tenant_id
        ) from exc
    if isinstance(entity, SignalData):
        _check_strict_signal(entity, tenant_id)
    # Both parts are validated already; constructing skips validating them a second time.
    return DomainEvent.model_construct(envelope=envelope, entity=entity)
