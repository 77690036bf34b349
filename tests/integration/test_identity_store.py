"""The identity mapping store and the connection resolver, against the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from connectors.base import EntityKind, IdentityCandidate, IdentityOutcome
from connectors.base.contract import CompanyRecord, PersonRecord
from processors.identity.repository import IdentityRepository, LinkState
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.settings import Settings


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[IdentityRepository]:
    client = Redis.from_url(settings.redis.url)
    yield IdentityRepository(client, key_prefix=settings.redis.key_prefix)
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _resolver(
    store: IdentityRepository, connection_id: str = "conn_h"
) -> ConnectionIdentityResolver:
    return ConnectionIdentityResolver(
        store, tenant_id="t_1", connection_id=connection_id, policy=MatchPolicy()
    )


ACME = CompanyRecord(
    company_id="co_1",
    name="Acme Robotics AB",
    domain="acme-robotics.se",
    domains=["acme-robotics.se"],
    website="https://www.acme-robotics.se/",
)


async def test_a_confident_match_is_linked_with_provenance(store: IdentityRepository) -> None:
    resolver = _resolver(store)
    candidates = [IdentityCandidate("hs_9", name="ACME Robotics", domains=("acme-robotics.se",))]
    decision = await resolver.decide(EntityKind.COMPANY, "co_1", ACME, candidates)
    assert decision.outcome is IdentityOutcome.LINKED
    assert decision.partner_object_id == "hs_9"
    assert decision.strategy == "domain"
    assert await resolver.linked(EntityKind.COMPANY, "co_1") == "hs_9"
    (link,) = await store.links("conn_h", "company")
    assert link.state is LinkState.AUTO_LINKED
    assert link.confidence == 1.0
    assert "domain" in link.explanation
    assert await store.by_partner("conn_h", "company", "hs_9") == "co_1"


async def test_two_candidates_on_the_same_key_go_to_review(store: IdentityRepository) -> None:
    resolver = _resolver(store)
    candidates = [
        IdentityCandidate("hs_1", name="Acme Robotics", domains=("acme-robotics.se",)),
        IdentityCandidate("hs_2", name="Acme Robotics Sverige", domains=("acme-robotics.se",)),
    ]
    decision = await resolver.decide(EntityKind.COMPANY, "co_1", ACME, candidates)
    assert decision.outcome is IdentityOutcome.AMBIGUOUS
    assert await resolver.linked(EntityKind.COMPANY, "co_1") is None
    (entry,) = await store.reviews("conn_h")
    assert entry.queast_id == "co_1"
    assert {c["partner_object_id"] for c in entry.candidates} == {"hs_1", "hs_2"}


async def test_no_candidate_is_no_match_and_a_created_object_is_linked(
    store: IdentityRepository,
) -> None:
    resolver = _resolver(store)
    decision = await resolver.decide(EntityKind.COMPANY, "co_1", ACME, [])
    assert decision.outcome is IdentityOutcome.NO_MATCH
    await resolver.link(EntityKind.COMPANY, "co_1", "hs_new", strategy="created")
    link = await store.get("conn_h", "company", "co_1")
    assert link is not None
    assert link.state is LinkState.CREATED


async def test_an_object_linked_to_another_entity_is_not_offered(
    store: IdentityRepository,
) -> None:
    resolver = _resolver(store)
    await resolver.link(EntityKind.COMPANY, "co_other", "hs_9", strategy="created")
    candidates = [IdentityCandidate("hs_9", name="Acme Robotics", domains=("acme-robotics.se",))]
    decision = await resolver.decide(EntityKind.COMPANY, "co_1", ACME, candidates)
    assert decision.outcome is IdentityOutcome.NO_MATCH


async def test_people_match_by_email_and_links_are_per_connection(
    store: IdentityRepository,
) -> None:
    resolver = _resolver(store)
    person = PersonRecord(person_id="pe_1", full_name="Ada Lovelace", email="Ada@Example.com")
    candidates = [IdentityCandidate("c_5", name="Ada L", emails=("ada@example.com",))]
    decision = await resolver.decide(EntityKind.PERSON, "pe_1", person, candidates)
    assert decision.outcome is IdentityOutcome.LINKED
    assert await _resolver(store, "conn_other").linked(EntityKind.PERSON, "pe_1") is None
    assert await store.unlink("conn_h", "person", "pe_1")
    assert await resolver.linked(EntityKind.PERSON, "pe_1") is None


@pytest.mark.parametrize("company_first", [True, False])
async def test_a_person_written_before_its_company_is_associated_by_whichever_comes_second(
    store: IdentityRepository, company_first: bool
) -> None:
    resolver = _resolver(store)

    async def company_links() -> dict[str, str]:
        await resolver.link(EntityKind.COMPANY, "co_1", "hs_c1", strategy="created")
        return await resolver.people_waiting("co_1")

    await resolver.link(EntityKind.PERSON, "pe_1", "hs_p1", strategy="created")
    if company_first:
        assert await company_links() == {}, "nobody waits yet"
        assert await resolver.wait_for_company("co_1", "pe_1") == "hs_c1", "the person associates"
        await resolver.associated("co_1", ["pe_1"])
    else:
        assert await resolver.wait_for_company("co_1", "pe_1") is None
        assert await company_links() == {"pe_1": "hs_p1"}, "the company associates"
        await resolver.associated("co_1", ["pe_1"])
    assert await resolver.people_waiting("co_1") == {}
    assert await store.waiting("conn_h", "co_1") == []


async def test_people_waiting_are_kept_until_associated_and_per_connection(
    store: IdentityRepository,
) -> None:
    resolver, other = _resolver(store), _resolver(store, "conn_other")
    await resolver.link(EntityKind.PERSON, "pe_1", "hs_p1", strategy="created")
    await resolver.wait_for_company("co_1", "pe_1")
    await resolver.wait_for_company("co_1", "pe_2")  # not linked itself (yet)
    assert await resolver.people_waiting("co_1") == {"pe_1": "hs_p1"}
    assert await resolver.people_waiting("co_1") == {"pe_1": "hs_p1"}, "reading removes nothing"
    assert await other.people_waiting("co_1") == {}
    await resolver.associated("co_1", ["pe_1"])
    assert await store.waiting("conn_h", "co_1") == ["pe_2"]
