"""Which Queast company an inbound highlight names: a bookmark, or a reason to ask a human.

In order:

1. the identity store: a partner object linked outbound for the event's connection
   (``idmap:{connection}:company:partner``,
   :class:`~processors.identity.repository.IdentityRepository`) gives strategy ``partner_id``,
   confidence 1.0;
2. ``queast_company_id`` sent by the partner and live in the tenant's directory gives
   ``queast_id``, confidence 1.0 (an unknown id is ignored and the fields are matched);
3. the event's company fields matched against the directory with the connection's match policy
   (:class:`~processors.identity.resolver.MatchPolicy`: its company strategies in order, its
   auto-link threshold and ambiguity margin), by the same pure decision outbound uses
   (:func:`~processors.identity.matching.match_company`), the directory's companies playing
   the candidates. ``partner_id`` in the strategies is step 1 and is not tried again.

An auto-linked decision is a bookmark; an ambiguous one is a review with reason
``ambiguous`` (two companies share the key, or two names score close) or ``below_threshold``
(one name between the review floor and the threshold); nothing found is ``no_candidate``.
A highlight with a partner object id, no link and no field to match (a CRM's
event often carries only the object id) is matched by the partner object's own fields, read with the
connection's :class:`~connectors.base.inbound.PartnerCompanyReader` (the partner's company
or organization record), the read fields standing in for the event's in step 3. When the
read gives nothing the highlight is a review, never dropped:

- ``partner_read_unavailable``: the connection has no reader (a connector without one, or an
  OAuth connection when the worker has no grant store to renew its token through: OAuth
  connections are read with the delivery sink's grant, see
  :mod:`processors.inbound.readers`);
- ``partner_object_not_found``: the partner answered 404 (the object was deleted or merged);
- ``partner_auth_failed``: the partner refused the connection's credentials, or refused to
  refresh its OAuth grant (after reloading the latest saved grant once);
- ``partner_needs_reauth``: the connection is parked as ``needs_reauth`` (the delivery side
  had its credentials refused) and was not updated since; it is not read until an admin
  authorises it again (saving the connection);
- ``partner_read_failed``: the read still failed after the reader's bounded retries (timeouts,
  429, 5xx) or the answer was not what the partner documents.

The read fields matched are recorded in the review's explanation only by name (never values).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from connectors.base.inbound import PartnerCompanyReader, PartnerReadError
from connectors.base.matchkeys import normalize_domain, normalize_linkedin_url
from processors.identity.matching import MatchDecision, MatchOutcome, match_company
from processors.identity.names import company_name_similarity, normalize_company_name
from processors.identity.resolver import MatchPolicy
from processors.identity.strategies import CompanyIdentity, MatchStrategy, PartnerCandidate
from processors.inbound.directory import DirectoryEntry
from processors.inbound.models import (
    BookmarkMatch,
    InboundEvent,
    MatchCandidate,
    MatchStrategyName,
    ReviewReason,
)

__all__ = [
    "Directory",
    "PartnerLinks",
    "Resolution",
    "resolve",
]

logger = logging.getLogger(__name__)

_MAX_LISTED = 20
_STRATEGY_NAMES: dict[MatchStrategy, MatchStrategyName] = {
    MatchStrategy.DOMAIN: "domain",
    MatchStrategy.LINKEDIN_URL: "linkedin_url",
    MatchStrategy.COMPANY_NAME: "company_name",
}
_INBOUND = "inbound"


class Directory(Protocol):
    async def get(self, tenant_id: str, company_id: str) -> DirectoryEntry | None: ...
    async def entries(self, tenant_id: str, company_ids: Sequence[str]) -> list[DirectoryEntry]: ...
    async def by_domain(self, tenant_id: str, domain: str) -> list[str]: ...
    async def by_linkedin(self, tenant_id: str, linkedin: str) -> list[str]: ...
    async def by_name(self, tenant_id: str, normalized_name: str) -> list[str]: ...


class PartnerLinks(Protocol):
    async def by_partner(self, connection_id: str, kind: str, partner_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Resolution:
    """A company and how it was found, or why a human must decide."""

    company_id: str | None
    match: BookmarkMatch | None
    reason: ReviewReason | None = None
    explanation: str = ""
    candidates: tuple[MatchCandidate, ...] = ()


async def _gather(
    directory: Directory, event: InboundEvent, strategies: Sequence[MatchStrategy]
) -> list[DirectoryEntry]:
    tenant, company = event.tenant_id, event.company
    ids: dict[str, None] = {}
    domain = normalize_domain(company.domain)
    if domain and MatchStrategy.DOMAIN in strategies:
        ids.update(dict.fromkeys(await directory.by_domain(tenant, domain)))
    linkedin = normalize_linkedin_url(company.linkedin_url, kind="company")
    if linkedin and MatchStrategy.LINKEDIN_URL in strategies:
        ids.update(dict.fromkeys(await directory.by_linkedin(tenant, linkedin)))
    normalized = normalize_company_name(company.name) if company.name else ""
    if normalized and MatchStrategy.COMPANY_NAME in strategies:
        ids.update(dict.fromkeys(await directory.by_name(tenant, normalized)))
    return await directory.entries(tenant, list(ids))


def _candidate(entry: DirectoryEntry) -> PartnerCandidate:
    return PartnerCandidate(
        partner_object_id=entry.company_id,
        name=entry.name,
        domains=entry.domains,
        linkedin_url=None if entry.linkedin is None else f"https://www.{entry.linkedin}",
    )


def _scored(
    decision: MatchDecision, entries: Sequence[DirectoryEntry], name: str | None
) -> list[MatchCandidate]:
    """The candidates the deciding strategy found, best first, with their scores."""
    by_id = {entry.company_id: entry for entry in entries}
    strategy = decision.strategy
    ids: Sequence[str] = ()
    for attempt in decision.attempts:
        if attempt.strategy is strategy:
            ids = attempt.candidate_ids
    if strategy is None:  # nothing decided: list the nearest names, if any
        strategy = MatchStrategy.COMPANY_NAME
        ids = list(by_id)
    scored: list[MatchCandidate] = []
    for company_id in ids:
        entry = by_id.get(company_id)
        if entry is None:
            continue
        if strategy is MatchStrategy.COMPANY_NAME:
            score = company_name_similarity(name, entry.name) if name and entry.name else 0.0
        else:
            score = 1.0
        scored.append(MatchCandidate(company_id=company_id, score=score, strategy=str(strategy)))
    scored.sort(key=lambda c: (-c.score, c.company_id))
    return scored[:_MAX_LISTED]


async def _read_partner(
    event: InboundEvent, partner_object_id: str, reader: PartnerCompanyReader | None
) -> InboundEvent | Resolution:
    """``event`` with the partner object's fields read, or the review to ask for instead."""
    if reader is None:
        return Resolution(
            None,
            None,
            reason="partner_read_unavailable",
            explanation=(
                "the partner object is not linked and the event carries no field to match; "
                "this connection's partner company cannot be read (no reader for its "
                "connector or credentials)"
            ),
        )
    try:
        read = await reader.company(partner_object_id)
    except PartnerReadError as exc:
        logger.warning(
            "inbound.partner_read.failed",
            extra={
                "tenant_id": event.tenant_id,
                "connector": event.connector,
                "connection_id": event.connection_id,
                "reason": exc.reason,
            },
        )
        if exc.reason == "auth_failed":
            return Resolution(
                None,
                None,
                reason="partner_auth_failed",
                explanation="the partner refused the connection's credentials",
            )
        if exc.reason == "needs_reauth":
            return Resolution(
                None,
                None,
                reason="partner_needs_reauth",
                explanation=(
                    "the connection is parked until it is authorised again (its credentials "
                    "were refused), so the partner's company was not read"
                ),
            )
        return Resolution(
            None,
            None,
            reason="partner_read_failed",
            explanation=f"reading the partner's company failed: {exc}"[:2000],
        )
    if read is None:
        return Resolution(
            None,
            None,
            reason="partner_object_not_found",
            explanation="the partner has no object with this id (deleted or merged)",
        )
    company = event.company.model_copy(
        update={"domain": read.domain, "name": read.name, "linkedin_url": read.linkedin_url}
    )
    return event.model_copy(update={"company": company})


async def resolve(
    event: InboundEvent,
    *,
    directory: Directory,
    links: PartnerLinks,
    policy: MatchPolicy,
    reader: PartnerCompanyReader | None = None,
) -> Resolution:
    """Resolve ``event``'s company (see the module docstring); ``reader`` reads the partner's
    company when the event has only its id."""
    company = event.company
    if company.partner_object_id is not None:
        linked = await links.by_partner(event.connection_id, "company", company.partner_object_id)
        if linked is not None:
            candidate = MatchCandidate(company_id=linked, score=1.0, strategy="partner_id")
            return Resolution(
                linked, BookmarkMatch(strategy="partner_id", confidence=1.0, candidates=[candidate])
            )
    if company.queast_company_id is not None:
        known = await directory.get(event.tenant_id, company.queast_company_id)
        if known is not None:
            candidate = MatchCandidate(company_id=known.company_id, score=1.0, strategy="queast_id")
            return Resolution(
                known.company_id,
                BookmarkMatch(strategy="queast_id", confidence=1.0, candidates=[candidate]),
            )
    fields = company.domain or company.name or company.linkedin_url
    if not fields and company.partner_object_id is not None:
        read = await _read_partner(event, company.partner_object_id, reader)
        if isinstance(read, Resolution):
            return read
        event, company = read, read.company
    if not (company.domain or company.name or company.linkedin_url):
        return Resolution(
            None, None, reason="no_candidate", explanation="the event names no known company"
        )
    strategies = [s for s in policy.company_strategies if s is not MatchStrategy.PARTNER_ID]
    entries = await _gather(directory, event, strategies)
    decision = match_company(
        CompanyIdentity(
            company_id=_INBOUND,
            name=company.name,
            domain=company.domain,
            linkedin_url=company.linkedin_url,
        ),
        [_candidate(entry) for entry in entries],
        strategies=strategies,
        auto_link_threshold=policy.auto_link_threshold,
        ambiguity_margin=policy.ambiguity_margin,
    )
    candidates = _scored(decision, entries, company.name)
    if decision.outcome is MatchOutcome.AUTO_LINKED and decision.partner_object_id is not None:
        name = None if decision.strategy is None else _STRATEGY_NAMES.get(decision.strategy)
        if name is not None:
            return Resolution(
                decision.partner_object_id,
                BookmarkMatch(strategy=name, confidence=decision.confidence, candidates=candidates),
            )
    if decision.outcome is MatchOutcome.AMBIGUOUS:
        close = len(candidates) > 1 or decision.strategy is not MatchStrategy.COMPANY_NAME
        return Resolution(
            None,
            None,
            reason="ambiguous" if close else "below_threshold",
            explanation=decision.explanation[:2000],
            candidates=tuple(candidates),
        )
    return Resolution(
        None,
        None,
        reason="no_candidate",
        explanation=decision.explanation[:2000],
        candidates=tuple(c for c in candidates if c.score > 0.0),
    )
