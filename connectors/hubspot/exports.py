"""What the HubSpot sink writes for one export, as :func:`~connectors.hubspot.payloads.export_for`
returns it.

:class:`CompanyWrite` and :class:`PersonWrite` carry the properties to create or update an
object; :class:`NoteWrite` a note about a company; :class:`Deletion` archives a linked
object. A contract record that cannot be mapped raises :class:`PayloadError` (a
``ValueError`` whose message names fields, never values), and the sink dead-letters it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors.base.contract import ContractViolation, RecordT, parse_record
from connectors.base.identity import EntityKind
from connectors.base.sink import OutboundRecord

__all__ = [
    "CompanyWrite",
    "Deletion",
    "Export",
    "NoteWrite",
    "PayloadError",
    "PersonWrite",
    "contract_of",
    "invalid_payload",
    "parse",
]


class PayloadError(ValueError):
    """A contract record the connector cannot map; the message names fields, not values."""


@dataclass(frozen=True, slots=True)
class CompanyWrite:
    """A company to create or update; ``properties`` already carry the Queast id."""

    queast_id: str
    properties: Mapping[str, str]
    domains: tuple[str, ...] = ()
    name: str | None = None
    linkedin_url: str | None = None
    kind: Literal[EntityKind.COMPANY] = EntityKind.COMPANY


@dataclass(frozen=True, slots=True)
class PersonWrite:
    """A contact to create or update, and the Queast company it belongs to, if any."""

    queast_id: str
    properties: Mapping[str, str]
    emails: tuple[str, ...] = ()
    company_queast_id: str | None = None
    linkedin_url: str | None = None
    kind: Literal[EntityKind.PERSON] = EntityKind.PERSON


@dataclass(frozen=True, slots=True)
class NoteWrite:
    """A note about a company (a signal or a job ad); ``key`` is unique per source item."""

    key: str
    company_queast_id: str
    properties: Mapping[str, str]
    person_queast_ids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Deletion:
    """Archive the object linked to a Queast company or person (no-op when unlinked)."""

    kind: EntityKind
    queast_id: str


Export = CompanyWrite | PersonWrite | NoteWrite | Deletion


def invalid_payload(event_type: str, violation: ContractViolation) -> PayloadError:
    """The error for a record of ``event_type`` that fails its model: at most five fields."""
    return PayloadError(f"{event_type} payload is invalid: {', '.join(violation.fields[:5])}")


def parse(model: type[RecordT], payload: Mapping[str, Any], event_type: str) -> RecordT:
    """``payload`` as ``model``; :class:`PayloadError` naming at most five bad fields."""
    try:
        return parse_record(model, payload)
    except ContractViolation as exc:
        raise invalid_payload(event_type, exc) from None


def contract_of(record: OutboundRecord, model: type[RecordT]) -> RecordT:
    """``record``'s typed contract record as ``model`` (parsed from its payload only when it
    was built without one); :class:`PayloadError` naming at most five bad fields."""
    try:
        return record.contract(model)
    except ContractViolation as exc:
        raise invalid_payload(record.event_type, exc) from None
