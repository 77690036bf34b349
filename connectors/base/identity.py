"""How a partner connector links Queast entities to partner objects, through the service.

Connectors know how to *find* candidates in their partner (HubSpot search by domain or email,
Pipedrive search on the domain custom field, ...); the service knows the tenant's mapping
store and match policy. A sink reaches the latter only through :class:`IdentityResolver`,
which the service puts in the :class:`~connectors.base.context.SinkContext`.

The flow for a record whose entity has no link yet:

1. ``await resolver.linked(kind, queast_id)``: the partner object id if linked (confirmed or
   auto-linked before), else ``None``;
2. the connector searches its partner and turns what it finds into
   :class:`IdentityCandidate` objects;
3. ``await resolver.decide(kind, queast_id, record, candidates)`` applies the connection's
   strategies and threshold and returns an :class:`IdentityDecision`:
   ``linked`` (write to that object; the link is already stored, provenance included),
   ``no_match`` (create the object, then call ``resolver.link`` with the new id) or
   ``ambiguous`` (write nothing: the service has queued a review entry; the connector reports
   the record with :class:`~connectors.base.errors.HeldForReviewError`).

A person whose company is not linked yet is written without its association and calls
``wait_for_company``; a company that gets linked asks ``people_waiting`` and associates them.
Each side writes before it reads, so whichever comes second writes the association; both
then call ``associated``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from connectors.base.contract import CompanyRecord, PersonRecord

__all__ = [
    "EntityKind",
    "EntityRecord",
    "IdentityCandidate",
    "IdentityDecision",
    "IdentityOutcome",
    "IdentityResolver",
]


class EntityKind(StrEnum):
    COMPANY = "company"
    PERSON = "person"


EntityRecord = CompanyRecord | PersonRecord
"""The typed contract record of the entity a connector links: what :meth:`IdentityResolver.decide`
matches against the candidates (the record the delivery engine decoded, never a payload dict)."""


class IdentityOutcome(StrEnum):
    LINKED = "linked"
    NO_MATCH = "no_match"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class IdentityCandidate:
    """A partner object that may be the entity, as the partner describes it."""

    partner_object_id: str
    name: str | None = None
    domains: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    linkedin_url: str | None = None
    queast_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityDecision:
    outcome: IdentityOutcome
    partner_object_id: str | None = None
    strategy: str | None = None
    confidence: float = 0.0
    explanation: str = ""
    review_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class IdentityResolver(Protocol):
    """The tenant's mapping store and match policy, for one connection."""

    async def linked(self, kind: EntityKind, queast_id: str) -> str | None:
        """The linked partner object id, or ``None``."""
        ...

    async def decide(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[IdentityCandidate],
    ) -> IdentityDecision:
        """Match ``record`` (the entity's typed contract record) against ``candidates``; see the
        module doc."""
        ...

    async def link(
        self, kind: EntityKind, queast_id: str, partner_object_id: str, *, strategy: str
    ) -> None:
        """Record a link the connector made (an object it created: ``strategy='created'``)."""
        ...

    async def wait_for_company(self, company_id: str, person_id: str) -> str | None:
        """The person was written without its company: remember it, then look again.

        Returns the company's partner object id if it is linked by now (associate, then
        call :meth:`associated`), else ``None`` (the company's write will do it).
        """
        ...

    async def people_waiting(self, company_id: str) -> Mapping[str, str]:
        """People written before ``company_id`` was linked: ``{queast id: partner id}``."""
        ...

    async def associated(self, company_id: str, person_ids: Sequence[str]) -> None:
        """The associations of ``person_ids`` to the company are written."""
        ...
