"""Test doubles for the HubSpot connector: an in-memory identity resolver and records."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import (
    EntityKind,
    EntityRecord,
    IdentityCandidate,
    IdentityDecision,
    IdentityOutcome,
    OutboundRecord,
)

_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Decided:
    kind: EntityKind
    queast_id: str
    candidates: tuple[IdentityCandidate, ...]
    outcome: IdentityOutcome


class FakeIdentity:
    """The tenant's mapping store and a simple policy.

    A candidate carrying the entity's Queast id, or a single candidate, links; several
    candidates (or an id listed in ``ambiguous``) are ambiguous; none is no match.
    Candidates whose object id is in ``taken`` (linked to another entity) are not offered
    to the policy, like the service's resolver does.
    """

    def __init__(
        self,
        links: Mapping[tuple[EntityKind, str], str] | None = None,
        *,
        ambiguous: Sequence[str] = (),
        taken: Sequence[str] = (),
    ) -> None:
        self.links: dict[tuple[EntityKind, str], str] = dict(links or {})
        self.ambiguous = set(ambiguous)
        self.taken = set(taken)
        self.decided: list[Decided] = []
        self.created: list[tuple[EntityKind, str, str]] = []
        self.waiting: dict[str, set[str]] = {}
        self.linked_calls = 0

    async def linked(self, kind: EntityKind, queast_id: str) -> str | None:
        self.linked_calls += 1
        return self.links.get((kind, queast_id))

    async def decide(
        self,
        kind: EntityKind,
        queast_id: str,
        record: EntityRecord,
        candidates: Sequence[IdentityCandidate],
    ) -> IdentityDecision:
        offered = tuple(candidates)
        candidates = [c for c in candidates if c.partner_object_id not in self.taken]
        own = [c for c in candidates if queast_id in c.queast_ids]
        if queast_id in self.ambiguous or (not own and len(candidates) > 1):
            decision = IdentityDecision(IdentityOutcome.AMBIGUOUS, review_id=f"rev_{queast_id}")
        elif own or candidates:
            chosen = (own or list(candidates))[0]
            self.links[(kind, queast_id)] = chosen.partner_object_id
            decision = IdentityDecision(
                IdentityOutcome.LINKED,
                partner_object_id=chosen.partner_object_id,
                strategy="partner_id" if own else "domain",
                confidence=1.0,
            )
        else:
            decision = IdentityDecision(IdentityOutcome.NO_MATCH)
        self.decided.append(Decided(kind, queast_id, offered, decision.outcome))
        return decision

    async def link(
        self, kind: EntityKind, queast_id: str, partner_object_id: str, *, strategy: str
    ) -> None:
        assert strategy == "created"
        self.links[(kind, queast_id)] = partner_object_id
        self.created.append((kind, queast_id, partner_object_id))

    async def wait_for_company(self, company_id: str, person_id: str) -> str | None:
        self.waiting.setdefault(company_id, set()).add(person_id)
        return self.links.get((EntityKind.COMPANY, company_id))

    async def people_waiting(self, company_id: str) -> Mapping[str, str]:
        waiting = self.waiting.get(company_id, set())
        return {
            person: self.links[(EntityKind.PERSON, person)]
            for person in sorted(waiting)
            if (EntityKind.PERSON, person) in self.links
        }

    async def associated(self, company_id: str, person_ids: Sequence[str]) -> None:
        self.waiting.get(company_id, set()).difference_update(person_ids)


class ListingIdentity(FakeIdentity):
    """A :class:`FakeIdentity` that tells the sink its connection's strategies, in order."""

    def __init__(self, strategies: Mapping[EntityKind, Sequence[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._strategies = {kind: tuple(names) for kind, names in strategies.items()}

    def strategies(self, kind: EntityKind) -> Sequence[str]:
        return self._strategies.get(kind, ())


def _header(event_type: str, entity_id: str, version: int) -> dict[str, Any]:
    number = next(_numbers)
    return {
        "event_type": event_type,
        "schema_version": "1.0",
        "occurred_at": "2026-11-26T05:00:00Z",
        "idempotency_key": f"ik_{number}",
        "tenant_id": "t_42",
        "connection_id": "c_hs",
        "correlation_id": "corr-1",
        "event_id": f"e_{number}",
        "entity_version": version,
    }


def record(
    event_type: str, entity_id: str, fields: Mapping[str, Any], *, version: int = 1
) -> OutboundRecord:
    """An outbound record for connection ``c_hs`` carrying a contract payload."""
    header = _header(event_type, entity_id, version)
    return OutboundRecord.model_validate(
        {
            "delivery_id": f"d_{header['event_id']}",
            "tenant_id": "t_42",
            "connection_id": "c_hs",
            "connector": "hubspot",
            "event_type": event_type,
            "event_id": header["event_id"],
            "idempotency_key": header["idempotency_key"],
            "correlation_id": "corr-1",
            "entity_id": entity_id,
            "entity_version": version,
            "occurred_at": header["occurred_at"],
            "schema_version": "1.0",
            "payload": {**header, **fields},
            "attempt": 1,
        }
    )


def company(company_id: str, *, version: int = 1, **fields: Any) -> OutboundRecord:
    domain = fields.get("domain", f"{company_id.replace('_', '-')}.example")
    values: dict[str, Any] = {
        "company_id": company_id,
        "name": f"Company {company_id}",
        "domain": domain,
        "domains": [domain] if domain else [],
        "deleted": False,
    }
    values.update(fields)
    return record("company.upserted", company_id, values, version=version)


def person(person_id: str, *, version: int = 1, **fields: Any) -> OutboundRecord:
    values: dict[str, Any] = {
        "person_id": person_id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"{person_id}@people.example",
        "emails": [],
        "deleted": False,
    }
    values.update(fields)
    return record("person.upserted", person_id, values, version=version)


def signal(signal_id: str, company_id: str, **fields: Any) -> OutboundRecord:
    values: dict[str, Any] = {
        "signal_id": signal_id,
        "company_id": company_id,
        "person_ids": [],
        "signal_type": "hiring_surge",
        "contract_mode": "strict",
        "contract_version": "1.0",
        "title": "Hiring surge in engineering",
        "summary": "Twelve new engineering roles in two weeks.",
        "score": 0.82,
        "reasons": [
            {
                "code": "JOB_ADS_SPIKE",
                "description": "12 job ads in 14 days",
                "evidence_ids": ["ja_1"],
            }
        ],
        "evidence": [
            {"kind": "job_ad", "id": "ja_1", "url": "https://jobs.example/1", "title": "SRE"}
        ],
        "decorations": {"technology_tags": ["Kubernetes", "Terraform"]},
        "detected_at": "2026-11-26T04:00:00Z",
    }
    values.update(fields)
    return record("signal.emitted", signal_id, values)


def job_ad(job_ad_id: str, company_id: str, **fields: Any) -> OutboundRecord:
    values: dict[str, Any] = {
        "job_ad_id": job_ad_id,
        "company_id": company_id,
        "title": "Site Reliability Engineer",
        "url": "https://jobs.example/sre",
        "location": "Berlin",
        "posted_at": "2026-11-20T08:00:00Z",
    }
    values.update(fields)
    return record("job_ad.published", job_ad_id, values)


def deleted(kind: EntityKind, queast_id: str, *, version: int = 2) -> OutboundRecord:
    key = "company_id" if kind is EntityKind.COMPANY else "person_id"
    return record(
        f"{kind.value}.deleted", queast_id, {key: queast_id, "deleted": True}, version=version
    )
