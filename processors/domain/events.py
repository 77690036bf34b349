"""The domain event envelope and the entities it carries, validated with pydantic.

Envelope (DESIGN.md "Input")::

    {"event_id": "uuid", "event_type": "company.upserted", "schema_version": "1.0",
     "tenant_id": "t_42", "occurred_at": "2026-11-26T05:00:00Z", "correlation_id": "uuid",
     "data": {...}}

Decisions where the design is silent:

- Unknown extra fields are ignored, in the envelope and in entities: upstream services may add
  fields (an additive change) without breaking the router. Known fields are validated strictly.
- ``schema_version`` must be ``1.<minor>``; another major version is rejected as unsupported.
  Both parts are ASCII digits, at most 9 each (a longer number is malformed, not a version).
- ``correlation_id`` is optional; when missing, the event id is used, so every export and
  delivery record still carries one.
- ``occurred_at``, a signal's ``detected_at`` and a job ad's ``posted_at`` must carry a
  timezone; they are normalised to UTC. A time that has no UTC equivalent in years 1 to 9999
  (``9999-12-31T23:59:59-01:00``) fails validation.
- Entity ``version`` and ``employee_count`` are at most 2**63 - 1: the contracts carry them as
  Avro ``long`` and the idempotency key packs the version into 8 bytes.
- Deletions need only the entity id and ``version``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

__all__ = [
    "EVENT_ENTITY_MODELS",
    "MAX_LONG",
    "CompanyData",
    "ContractMode",
    "DomainEvent",
    "DomainEventEnvelope",
    "Entity",
    "EntityData",
    "EventType",
    "JobAdData",
    "PersonData",
    "SignalData",
    "SignalDecorations",
    "SignalEvidence",
    "SignalReason",
]

TenantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ShortText = Annotated[str, StringConstraints(max_length=1_000)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Url = Annotated[str, StringConstraints(max_length=2_048)]
MAX_LONG = 2**63 - 1
"""The largest integer an Avro ``long`` (and the idempotency key's version field) holds."""
Version = Annotated[int, Field(ge=0, le=MAX_LONG)]


def _to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a time with no UTC equivalent is a validation error."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = "has no UTC equivalent within years 1 to 9999"
        raise ValueError(msg) from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A datetime that must carry a zone, normalised to UTC."""


class EventType(StrEnum):
    """The domain event types the router understands."""

    COMPANY_UPSERTED = "company.upserted"
    COMPANY_DELETED = "company.deleted"
    PERSON_UPSERTED = "person.upserted"
    PERSON_DELETED = "person.deleted"
    SIGNAL_EMITTED = "signal.emitted"
    JOB_AD_PUBLISHED = "job_ad.published"


class ContractMode(StrEnum):
    """How a signal type stands to Queast's locked causal model."""

    STRICT = "strict"
    INFORMATIONAL = "informational"
    LEGACY = "legacy"


class Entity(BaseModel):
    """Base of every entity: its id field and its monotonic ``version``."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    id_field: ClassVar[str]
    version: Version

    @property
    def entity_id(self) -> str:
        """The entity's own id, whatever its field is called."""
        return str(getattr(self, self.id_field))


class CompanyData(Entity):
    id_field: ClassVar[str] = "company_id"
    company_id: EntityId
    name: ShortText | None = None
    domain: ShortText | None = None
    domains: list[ShortText] = Field(default_factory=list, max_length=100)
    website: Url | None = None
    linkedin_url: Url | None = None
    industry: ShortText | None = None
    employee_count: Annotated[int, Field(ge=0, le=MAX_LONG)] | None = None
    country: ShortText | None = None


class PersonData(Entity):
    id_field: ClassVar[str] = "person_id"
    person_id: EntityId
    company_id: EntityId | None = None
    full_name: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    email: ShortText | None = None
    emails: list[ShortText] = Field(default_factory=list, max_length=100)
    linkedin_url: Url | None = None
    title: ShortText | None = None


class SignalReason(BaseModel):
    """One causal reason of a signal, pointing at the evidence that supports it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: LongText
    evidence_ids: list[EntityId] = Field(default_factory=list, max_length=200)


class SignalEvidence(BaseModel):
    """A reference to a piece of evidence (a job ad, an article...), never its content."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    id: EntityId
    url: Url | None = None
    title: ShortText | None = None


class SignalDecorations(BaseModel):
    """Presentation extras. Technology tags live here and nowhere else."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    technology_tags: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=200
    )


class SignalData(Entity):
    id_field: ClassVar[str] = "signal_id"
    signal_id: EntityId
    company_id: EntityId
    person_ids: list[EntityId] = Field(default_factory=list, max_length=1_000)
    signal_type: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    contract_mode: ContractMode
    contract_version: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    title: ShortText
    summary: LongText | None = None
    score: Annotated[float, Field(allow_inf_nan=False)] | None = None
    reasons: list[SignalReason] = Field(default_factory=list, max_length=200)
    evidence: list[SignalEvidence] = Field(default_factory=list, max_length=500)
    decorations: SignalDecorations = Field(default_factory=SignalDecorations)
    detected_at: UtcDatetime


class JobAdData(Entity):
    id_field: ClassVar[str] = "job_ad_id"
    job_ad_id: EntityId
    company_id: EntityId
    title: ShortText | None = None
    url: Url | None = None
    location: ShortText | None = None
    posted_at: UtcDatetime | None = None


class _CompanyRef(Entity):
    """What a deletion needs: the id and the version."""

    id_field: ClassVar[str] = "company_id"
    company_id: EntityId


class _PersonRef(Entity):
    id_field: ClassVar[str] = "person_id"
    person_id: EntityId


EntityData = CompanyData | PersonData | SignalData | JobAdData | _CompanyRef | _PersonRef

EVENT_ENTITY_MODELS: dict[EventType, type[Entity]] = {
    EventType.COMPANY_UPSERTED: CompanyData,
    EventType.COMPANY_DELETED: _CompanyRef,
    EventType.PERSON_UPSERTED: PersonData,
    EventType.PERSON_DELETED: _PersonRef,
    EventType.SIGNAL_EMITTED: SignalData,
    EventType.JOB_AD_PUBLISHED: JobAdData,
}
"""Which entity model validates ``data`` for each event type."""


class DomainEventEnvelope(BaseModel):
    """The envelope as published upstream; ``data`` is validated per event type afterwards."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: EventType
    schema_version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}\.[0-9]{1,9}$")]
    tenant_id: TenantId
    occurred_at: UtcDatetime
    correlation_id: uuid.UUID | None = None
    data: dict[str, Any]

    @property
    def major_version(self) -> int:
        return int(self.schema_version.split(".", 1)[0])


class DomainEvent(BaseModel):
    """A validated event: the envelope plus its typed entity."""

    model_config = ConfigDict(frozen=True)

    envelope: DomainEventEnvelope
    entity: Entity

    @property
    def correlation_id(self) -> str:
        return str(self.envelope.correlation_id or self.envelope.event_id)
