"""Resolving a highlight to a Queast company, over in-memory stores."""

from __future__ import annotations

import pytest

from processors.identity.resolver import MatchPolicy
from processors.identity.strategies import MatchStrategy
from processors.inbound.resolution import Resolution, resolve
from tests.unit.inbound.fakes import CONNECTION, FakeDirectory, FakeLinks, inbound_event


@pytest.fixture
def directory() -> FakeDirectory:
    found = FakeDirectory()
    found.upsert("co_acme", name="Acme Robotics AB", domain="acme-robotics.se")
    found.upsert("co_nord_1", name="Nordic Widgets")
    found.upsert("co_nord_2", name="Nordic Widgets AB")
    found.upsert(
        "co_li", name="Linked Co", linkedin_url="https://www.linkedin.com/company/linked-co/"
    )
    return found


async def _resolve(
    directory: FakeDirectory, links: FakeLinks | None = None, **company: str
) -> Resolution:
    return await resolve(
        inbound_event(**company),
        directory=directory,
        links=links or FakeLinks(),
        policy=MatchPolicy(),
    )


async def test_a_partner_object_linked_outbound_is_partner_id(directory: FakeDirectory) -> None:
    links = FakeLinks({f"{CONNECTION}:hs_42": "co_acme"})
    found = await _resolve(directory, links, partner_object_id="hs_42", name="Whatever")
    assert found.company_id == "co_acme"
    assert found.match is not None
    assert (found.match.strategy, found.match.confidence) == ("partner_id", 1.0)


async def test_a_known_queast_id_is_queast_id(directory: FakeDirectory) -> None:
    found = await _resolve(directory, queast_company_id="co_li")
    assert found.company_id == "co_li"
    assert found.match is not None
    assert found.match.strategy == "queast_id"


async def test_an_unknown_queast_id_falls_back_to_the_fields(directory: FakeDirectory) -> None:
    found = await _resolve(directory, queast_company_id="co_gone", domain="www.acme-robotics.se")
    assert (found.company_id, found.match and found.match.strategy) == ("co_acme", "domain")


async def test_a_domain_of_a_known_company_is_domain(directory: FakeDirectory) -> None:
    found = await _resolve(directory, domain="https://shop.acme-robotics.se/x")
    assert found.company_id == "co_acme"
    assert found.match is not None
    assert found.match.strategy == "domain"
    assert found.match.confidence == 1.0
    assert [c.company_id for c in found.match.candidates] == ["co_acme"]


async def test_a_linkedin_page_is_linkedin_url(directory: FakeDirectory) -> None:
    found = await _resolve(directory, linkedin_url="linkedin.com/company/Linked-Co")
    assert (found.company_id, found.match and found.match.strategy) == ("co_li", "linkedin_url")


async def test_a_close_name_is_company_name(directory: FakeDirectory) -> None:
    found = await _resolve(directory, name="ACME Robotics")
    assert found.company_id == "co_acme"
    assert found.match is not None
    assert found.match.strategy == "company_name"
    assert found.match.confidence >= MatchPolicy().auto_link_threshold


async def test_a_name_two_companies_share_goes_to_review(directory: FakeDirectory) -> None:
    found = await _resolve(directory, name="Nordic Widgets")
    assert found.company_id is None
    assert found.reason == "ambiguous"
    ids = {c.company_id for c in found.candidates}
    assert ids == {"co_nord_1", "co_nord_2"}
    assert all(c.strategy == "company_name" and c.score > 0.9 for c in found.candidates)


async def test_a_typo_below_the_threshold_goes_to_review(directory: FakeDirectory) -> None:
    found = await _resolve(directory, name="Acme Robotix")
    assert found.company_id is None
    assert found.reason in {"below_threshold", "no_candidate"}


async def test_nothing_known_is_no_candidate(directory: FakeDirectory) -> None:
    found = await _resolve(directory, domain="unknown-company.de")
    assert (found.company_id, found.reason) == (None, "no_candidate")


async def test_an_unlinked_partner_object_without_fields_waits_for_a_human(
    directory: FakeDirectory,
) -> None:
    found = await _resolve(directory, partner_object_id="hs_unlinked")
    assert (found.company_id, found.reason) == (None, "partner_read_unavailable")


async def test_the_connection_strategies_are_followed(directory: FakeDirectory) -> None:
    only_names = MatchPolicy(company_strategies=(MatchStrategy.COMPANY_NAME,))
    found = await resolve(
        inbound_event(domain="acme-robotics.se", name="Nordic Widgets"),
        directory=directory,
        links=FakeLinks(),
        policy=only_names,
    )
    assert found.company_id is None
    assert found.reason == "ambiguous"


async def test_a_link_of_another_connection_does_not_count(directory: FakeDirectory) -> None:
    links = FakeLinks({"conn_other:hs_42": "co_acme"})
    found = await _resolve(directory, links, partner_object_id="hs_42")
    assert found.reason == "partner_read_unavailable"
