"""The contract records a connector receives, as typed models: one set for every connector.

An export's payload is one of the Avro contract records (``avro_schemas/<family>/*.avsc``,
mirrored by ``processors/contracts``). These models declare their entity fields with the
Avro types (``["null", "string"]`` is ``str | None``, an array defaults to empty, the
signal's ``contract_mode`` is the Avro enum); the envelope fields every record also carries
(tenant, connection, ids) are ignored, since they travel on the
:class:`~connectors.base.sink.OutboundRecord` itself, except ``occurred_at`` where a
connector dates something by it.

A connector parses a payload with :func:`parse_record` and maps the typed record to its
partner's request bodies; it never reads the payload dict itself. A record that does not
match raises :class:`ContractViolation`, whose ``fields`` name what is wrong and never a
value (models are built with ``hide_input_in_errors``); each connector turns it into its
own permanent error, so the record is dead-lettered and nothing is lost.

Constraints a partner adds on top of the contract (Pipedrive refusing a negative employee
count, say) are the connector's, not these models'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CompanyRecord",
    "ContractRecord",
    "ContractViolation",
    "DeletionRecord",
    "EvidenceRef",
    "JobAdRecord",
    "PersonRecord",
    "RecordT",
    "SignalDecorations",
    "SignalReason",
    "SignalRecord",
    "parse_record",
]


class ContractRecord(BaseModel):
    """Base of the contract models: frozen, unknown fields ignored, inputs never in errors."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)


class CompanyRecord(ContractRecord):
    """``company.v1``."""

    company_id: str = Field(min_length=1)
    name: str | None = None
    domain: str | None = None
    domains: list[str] = Field(default_factory=list)
    website: str | None = None
    linkedin_url: str | None = None
    industry: str | None = None
    employee_count: int | None = None
    country: str | None = None
    deleted: bool = False


class PersonRecord(ContractRecord):
    """``person.v1``."""

    person_id: str = Field(min_length=1)
    company_id: str | None = None
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    emails: list[str] = Field(default_factory=list)
    linkedin_url: str | None = None
    title: str | None = None
    deleted: bool = False


class SignalReason(ContractRecord):
    """A causal reason of a signal, citing evidence by id."""

    code: str
    description: str
    evidence_ids: list[str] = Field(default_factory=list)


class EvidenceRef(ContractRecord):
    """A reference to evidence (the evidence travels in its own contract)."""

    kind: str
    id: str
    url: str | None = None
    title: str | None = None


class SignalDecorations(ContractRecord):
    """Display-only extras of a signal; never reasons."""

    technology_tags: list[str] = Field(default_factory=list)


class SignalRecord(ContractRecord):
    """``signal.v1``."""

    signal_id: str = Field(min_length=1)
    company_id: str = Field(min_length=1)
    person_ids: list[str] = Field(default_factory=list)
    signal_type: str
    contract_mode: Literal["strict", "informational", "legacy"]
    contract_version: str
    title: str
    summary: str | None = None
    score: float | None = None
    reasons: list[SignalReason] = Field(default_factory=list)
    evidence: list[EvidenceRef] = Field(default_factory=list)
    decorations: SignalDecorations = Field(default_factory=SignalDecorations)
    detected_at: str
    occurred_at: str | None = None


class JobAdRecord(ContractRecord):
    """``job_ad_evidence.v1``."""

    job_ad_id: str = Field(min_length=1)
    company_id: str = Field(min_length=1)
    title: str | None = None
    url: str | None = None
    location: str | None = None
    posted_at: str | None = None
    occurred_at: str | None = None


class DeletionRecord(ContractRecord):
    """What a ``*.deleted`` record must carry: the id of the entity it deletes.

    Only the ids are read, so a deletion is honoured even when the rest of the record is
    stale; whether the right id is present is the connector's check.
    """

    company_id: str | None = None
    person_id: str | None = None


class ContractViolation(ValueError):
    """A payload that does not match its contract; ``fields`` are the offending paths."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        super().__init__(f"payload does not match its contract: {', '.join(fields)}")
        self.fields = fields


RecordT = TypeVar("RecordT", bound=ContractRecord)
"""A contract model type, for helpers generic over records."""


def parse_record(model: type[RecordT], payload: Mapping[str, Any]) -> RecordT:
    """``payload`` as ``model``; :class:`ContractViolation` naming the bad fields otherwise."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        fields = sorted(
            {".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)}
        )
        raise ContractViolation(tuple(fields)) from None
