"""The service side of :class:`connectors.base.IdentityResolver`, for one tenant connection.

Partner sinks find candidates in their partner; this resolver applies the connection's match
policy (strategies in order, auto-link threshold, ambiguity margin) with
:mod:`processors.identity.matching` to the entity's typed contract record (its match keys
copied into a :class:`~processors.identity.strategies.CompanyIdentity` or
``PersonIdentity``, a blank value being no key) and keeps the outcome in the mapping store:

- an auto-linked match is stored with its provenance and is still listed for review;
- an ambiguous one writes a review entry (nothing is written to the partner);
- a candidate already linked to another Queast entity is never offered again, nor one a
  tenant admin rejected for this entity (a rejected review: the entity is created anew).

The policy lives in the connection's settings as ``match_policy``:
``{"company_strategies": [...], "person_strategies": [...], "auto_link_threshold": 0.92,
"ambiguity_margin": 0.05}``; anything left out takes the defaults of
:mod:`processors.identity.matching`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import (
    EntityKind,
    EntityRecord,
    IdentityCandidate,
    IdentityDecision,
    IdentityOutcome,
)
from processors.identity.matching import (
    DEFAULT_AMBIGUITY_MARGIN,
    DEFAULT_AUTO_LINK_THRESHOLD,
    MatchDecision,
    MatchOutcome,
    match_company,
    match_person,
)
from processors.identity.repository import IdentityRepository, LinkState, MatchRef, ReviewEntry
from processors.identity.strategies import (
    DEFAULT_COMPANY_STRATEGIES,
    DEFAULT_PERSON_STRATEGIES,
    CompanyIdentity,
    MatchStrategy,
    PartnerCandidate,
    PersonIdentity,
)

__all__ = ["ConnectionIdentityResolver", "MatchPolicy"]


class MatchPolicy(BaseModel):
    """A connection's identity match policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company_strategies: tuple[MatchStrategy, ...] = DEFAULT_COMPANY_STRATEGIES
    person_strategies: tuple[MatchStrategy, ...] = DEFAULT_PERSON_STRATEGIES
    auto_link_threshold: float = Field(default=DEFAULT_AUTO_LINK_THRESHOLD, ge=0.5, le=1.0)
    ambiguity_margin: float = Field(default=DEFAULT_AMBIGUITY_MARGIN, ge=0.0, le=0.5)


_IDENTITY_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {
    CompanyIdentity: ("name", "domain", "domains", "website", "linkedin_url"),
    PersonIdentity: ("full_name", "email", "emails", "linkedin_url"),
}
"""The match keys each identity copies from the entity's contract record (same names)."""


_IdentityT = TypeVar("_IdentityT", CompanyIdentity, PersonIdentity)


def _identity(
    model: type[_IdentityT], id_field: str, queast_id: str, record: EntityRecord
) -> _IdentityT:
    """The match keys of ``record`` as ``model``; a blank string is no key."""
    values: dict[str, Any] = {id_field: queast_id}
    for name in _IDENTITY_FIELDS[model]:
        value = getattr(record, name, None)
        if isinstance(value, list):
            values[name] = tuple(value)
        elif value:
            values[name] = value
    return model(**values)


class ConnectionIdentityResolver:
    """Links of one tenant connection; built by the service for each partner sink."""

    def __init__(
        self,
        repository: IdentityRepository,
        *,
        tenant_id: str,
        connection_id: str,
        policy: MatchPolicy,
    ) -> None:
        self._repository = repository
        self._tenant_id = tenant_id
        self._connection_id = connection_id
        self._policy = policy

    def _ref(self, kind: EntityKind, queast_id: str) -> MatchRef:
        return MatchRef(self._tenant_id, self._connection_id, kind.value, queast_id)

    async def linked(self, kind: EntityKind, queast_id: str) -> str | None:
        link = await self._repository.get(self._connection_id, kind.value, queast_id)
        return None if link is None else link.partner_object_id

    async def decide(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[IdentityCandidate],
    ) -> IdentityDecision:
        rejected = set(await self._repository.rejected(self._connection_id, kind.value, queast_id))
        free = [
            c
            for c in candidates
            if c.partner_object_id not in rejected and await self._free_for(kind, queast_id, c)
        ]
        offered = [
            PartnerCandidate(
                partner_object_id=c.partner_object_id,
                name=c.name,
                domains=c.domains,
                emails=c.emails,
                linkedin_url=c.linkedin_url,
                queast_ids=c.queast_ids,
            )
            for c in free
        ]
        decision = self._match(kind, queast_id, record, offered)
        if decision.outcome is MatchOutcome.AUTO_LINKED and decision.partner_object_id:
            await self._repository.put(
                self._ref(kind, queast_id).link(
                    decision.partner_object_id,
                    state=LinkState.AUTO_LINKED,
                    strategy=str(decision.strategy),
                    confidence=decision.confidence,
                    explanation=decision.explanation,
                )
            )
            return IdentityDecision(
                IdentityOutcome.LINKED,
                decision.partner_object_id,
                str(decision.strategy),
                decision.confidence,
                decision.explanation,
            )
        if decision.outcome is MatchOutcome.AMBIGUOUS:
            entry = ReviewEntry(
                tenant_id=self._tenant_id,
                connection_id=self._connection_id,
                kind=kind.value,
                queast_id=queast_id,
                best_candidate_id=decision.best_candidate_id,
                confidence=decision.confidence,
                strategy=None if decision.strategy is None else str(decision.strategy),
                explanation=decision.explanation,
                candidates=[c.model_dump(mode="json") for c in offered],
            )
            await self._repository.add_review(entry)
            return IdentityDecision(
                IdentityOutcome.AMBIGUOUS,
                None,
                entry.strategy,
                decision.confidence,
                decision.explanation,
                review_id=f"{kind.value}:{queast_id}",
            )
        return IdentityDecision(IdentityOutcome.NO_MATCH, None, None, 0.0, decision.explanation)

    async def link(
        self, kind: EntityKind, queast_id: str, partner_object_id: str, *, strategy: str
    ) -> None:
        made = f"partner object made by this connection ({strategy})"
        await self._repository.put(
            self._ref(kind, queast_id).link(
                partner_object_id,
                state=LinkState.CREATED,
                strategy=strategy,
                confidence=1.0,
                explanation=made,
            )
        )

    async def wait_for_company(self, company_id: str, person_id: str) -> str | None:
        """Note that ``person_id`` was written without its company, then look the company up.

        Returns the company's partner id when it is linked by now: the caller writes the
        association and calls :meth:`associated`. Otherwise the company's own write will find
        the person in :meth:`people_waiting`.
        """
        await self._repository.add_waiting(self._connection_id, company_id, person_id)
        return await self.linked(EntityKind.COMPANY, company_id)

    async def people_waiting(self, company_id: str) -> dict[str, str]:
        """Linked people waiting for ``company_id``: ``{person queast id: partner id}``."""
        waiting = await self._repository.waiting(self._connection_id, company_id)
        found: dict[str, str] = {}
        for person_id in waiting:
            partner_id = await self.linked(EntityKind.PERSON, person_id)
            if partner_id is not None:
                found[person_id] = partner_id
        return found

    async def associated(self, company_id: str, person_ids: Sequence[str]) -> None:
        """The associations of ``person_ids`` to ``company_id`` are written."""
        await self._repository.done_waiting(self._connection_id, company_id, list(person_ids))

    async def _free_for(self, kind: EntityKind, queast_id: str, c: IdentityCandidate) -> bool:
        owner = await self._repository.by_partner(
            self._connection_id, kind.value, c.partner_object_id
        )
        return owner is None or owner == queast_id

    def _match(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[PartnerCandidate],
    ) -> MatchDecision:
        policy = self._policy
        if kind is EntityKind.COMPANY:
            company = _identity(CompanyIdentity, "company_id", queast_id, record)
            match = functools.partial(match_company, company, strategies=policy.company_strategies)
        else:
            person = _identity(PersonIdentity, "person_id", queast_id, record)
            match = functools.partial(match_person, person, strategies=policy.person_strategies)
        return match(
            candidates,
            auto_link_threshold=policy.auto_link_threshold,
            ambiguity_margin=policy.ambiguity_margin,
        )
