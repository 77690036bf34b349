"""Turning raw Kafka records from ``queast.domain-events`` into validated domain events.

Every way a record can be bad has an :class:`InvalidReason`; :func:`parse_domain_event` raises
:class:`InvalidEventError` with that reason and a detail that names fields, never their values
(details end up in logs and dead-letter headers).

Decisions where the issue is silent:

- JSON is read by the standard library. Integer literals longer than
  :data:`MAX_INTEGER_DIGITS` digits are unparseable (Python refuses to convert numbers of more
  than 4,300 digits anyway, and no field of an event needs more than 19). ``NaN`` and
  ``Infinity`` are read as floats; a known field that must be finite refuses them. Of
  duplicate keys the last one wins, for the key check and validation alike.
- The tenant named in an error (``qi.tenant_id`` on the dead letter, ``tenant_id`` in the
  log) is the envelope's ``tenant_id`` only when it is a well-formed tenant id; anything else
  (too long, odd characters, lone surrogates) is not repeated.
- :data:`InvalidReason.INTERNAL_ERROR` is set by the routing service, never here: it marks a
  record whose parsing, mapping or encoding raised something unforeseen (a bug), so that the
  record is dead-lettered instead of stopping its partition.
- :data:`InvalidReason.CONFIGURATION_UNREADABLE` is set by the routing service too: the event
  is fine, but one of its tenant's stored connection records does not validate; the event
  waits in the dead-letter topic, to be republished once the connection is written again.
"""

from __future__ import annotations

import json
import re
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

__all__ = ["MAX_INTEGER_DIGITS", "InvalidEventError", "InvalidReason", "parse_domain_event"]

SUPPORTED_MAJOR_VERSION = 1
MAX_INTEGER_DIGITS = 100
"""The longest integer literal (sign excluded) read from an event; longer ones are refused."""
_TENANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
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
    INTERNAL_ERROR = "internal_error"
    CONFIGURATION_UNREADABLE = "configuration_unreadable"


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


class _IntegerTooLongError(ValueError):
    """An integer literal longer than :data:`MAX_INTEGER_DIGITS`."""


def _parse_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _IntegerTooLongError
    return int(literal)


def _tenant_of(document: dict[str, Any]) -> str | None:
    tenant = document.get("tenant_id")
    return tenant if isinstance(tenant, str) and tenant else None


def _well_formed(tenant_id: str) -> str | None:
    """The tenant id if it may be repeated in headers and logs, else ``None``."""
    return tenant_id if _TENANT_ID.fullmatch(tenant_id) else None


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
        document = json.loads(value, parse_int=_parse_int)
    except _IntegerTooLongError:
        raise InvalidEventError(
            InvalidReason.UNPARSEABLE,
            f"not JSON this router reads: an integer of more than {MAX_INTEGER_DIGITS} digits",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(
            InvalidReason.UNPARSEABLE, f"not JSON: {type(exc).__name__}"
        ) from exc
    except ValueError as exc:  # anything else the decoder refuses to convert
        raise InvalidEventError(
            InvalidReason.UNPARSEABLE, f"not JSON: {type(exc).__name__}"
        ) from exc
    except RecursionError as exc:
        raise InvalidEventError(InvalidReason.UNPARSEABLE, "JSON nested too deeply") from exc
    if not isinstance(document, dict):
        raise InvalidEventError(
            InvalidReason.NOT_AN_OBJECT, f"top level is {type(document).__name__}, not an object"
        )
    claimed = _tenant_of(document)
    if claimed is None:
        raise InvalidEventError(InvalidReason.MISSING_TENANT, "tenant_id is missing or empty")
    tenant_id = _well_formed(claimed)
    if key is None or key.decode("utf-8", errors="replace") != claimed:
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
        _check_strict_signal(entity, envelope.tenant_id)
    # Both parts are validated already; constructing skips validating them a second time.
    return DomainEvent.model_construct(envelope=envelope, entity=entity)
