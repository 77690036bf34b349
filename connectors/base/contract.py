"""The contract records a connector receives, as typed models: one set for every connector.

An export's payload is one of the Avro contract records (``avro_schemas/<family>/*.avsc``,
mirrored by ``processors/contracts``). These models declare their entity fields with the
Avro types (``["null", "string"]`` is ``str | None``, an array defaults to empty, the
signal's ``contract_mode`` is the Avro enum); the envelope fields every record also carries
(tenant, connection, ids) are ignored, since they travel on the
:class:`~connectors.base.sink.OutboundRecord` itself, except ``occurred_at`` where a
connector dates something by it.

The contract keeps one form through delivery: the delivery engine decodes each export once,
parses it with :func:`parse_record` into the model of its contract family
(:func:`model_for_family`) and hands the typed record to the connector on
:attr:`OutboundRecord.record <connectors.base.sink.OutboundRecord.record>`. A connector maps
that typed record to its partner's request bodies and never reads the payload dict itself
(:meth:`~connectors.base.sink.OutboundRecord.contract` parses the payload only for a record
built by hand without a typed one, as tools and tests do). A deletion travels as its
family's record (``deleted`` set); :class:`DeletionRecord` is the lenient reading of a
hand-built deletion.

A record that decodes but does not match its model raises :class:`ContractViolation`,
whose ``fields`` name what is wrong and never a value (models are built with
``hide_input_in_errors``). The engine does not send such a record: it asks the connection's
sink which error it is (:meth:`~connectors.base.sink.BaseSink.contract_error`, each partner
connector giving the same permanent error its own parsing gave before), and the record is
dead-lettered with that reason, counted as an attempt, while the rest of the batch is sent.
A connector that sends the JSON form as it is (the webhook) declines, and the record is sent.

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
    "model_for_family",
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
    """A payload that does not match its contract; ``fields`` are the offending paths and
    ``model`` the contract model it was parsed as."""

    def __init__(
        self, fields: tuple[str, ...], model: type[ContractRecord] = ContractRecord
    ) -> None:
        super().__init__(f"payload does not match its contract: {', '.join(fields)}")
        self.fields = fields
        self.model = model


_FAMILY_MODELS: dict[str, type[ContractRecord]] = {
    "company": CompanyRecord,
    "person": PersonRecord,
    "signal": SignalRecord,
    "job_ad_evidence": JobAdRecord,
}


def model_for_family(family: str) -> type[ContractRecord] | None:
    """The model of contract family ``family`` (``company``, ``person``, ``signal``,
    ``job_ad_evidence``), or ``None`` for a family without one."""
    return _FAMILY_MODELS.get(family)


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
        raise ContractViolation(tuple(fields), model) from None
