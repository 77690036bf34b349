"""HubSpotSink through ``httpx.MockTransport``, a fake clock and a fake identity resolver."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    BatchOutcome,
    ConnectorError,
    DeliveryResult,
    EntityKind,
    HeldForReviewError,
    HttpClientFactory,
    IdentityOutcome,
    OutboundRecord,
    PermanentError,
    QuotaExhaustedError,
    SinkContext,
    TransientError,
    http_client_factory,
)
from connectors.hubspot import HubSpotConnectionConfig, HubSpotSink
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.unit.connectors.fakes import FakeClock, MemoryGrantStore
from tests.unit.connectors.hubspot.fakes import (
    FakeIdentity,
    ListingIdentity,
    company,
    deleted,
    job_ad,
    person,
    signal,
)

API = "https://api.hubapi.com"
PRIVATE = {"type": "private_app", "token": "pat-secret-token"}
Responder = Callable[[httpx.Request], httpx.Response]
C, P = EntityKind.COMPANY, EntityKind.PERSON


def _body(request: httpx.Request) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.content) if request.content else {}
    return parsed


class MockHubSpot:
    """Answers like HubSpot by default; ``script`` overrides the next matching requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.search_results: dict[str, list[dict[str, Any]]] = {"companies": [], "contacts": []}
        self.headers: dict[str, str] = {}
        self._ids = itertools.count(9001)
        self._tokens = itertools.count(1)
        self._scripts: list[tuple[str, Responder]] = []

    def script(self, path_contains: str, responder: Responder, *, times: int = 1) -> None:
        self._scripts.extend([(path_contains, responder)] * times)

    def calls(self, path_contains: str) -> list[httpx.Request]:
        return [r for r in self.requests if path_contains in r.url.path]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for index, (fragment, responder) in enumerate(self._scripts):
            if fragment in request.url.path:
                del self._scripts[index]
                return responder(request)
        return self._default(request)

    def _default(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/v1/token":
            number = next(self._tokens)
            body = {"access_token": f"at-{number}", "refresh_token": "rt", "expires_in": 1800}
            return httpx.Response(200, json=body)
        data = _body(request)
        if path.endswith("/search"):
            object_type = path.split("/")[4]
            return httpx.Response(
                200, json={"total": 0, "results": self.search_results[object_type]}
            )
        if path.endswith("/batch/archive"):
            return httpx.Response(204, headers=self.headers)
        if "/crm/v4/associations/" in path:
            results = [
                {"fromObjectId": int(i["from"]["id"]), "toObjectId": int(i["to"]["id"])}
                for i in data["inputs"]
            ]
            return httpx.Response(200, json={"status": "COMPLETE", "results": results})
        results = []
        for item in data["inputs"]:
            if path.endswith("/batch/update"):
                object_id, new = item["id"], None
            else:
                object_id, new = str(next(self._ids)), True
            result: dict[str, Any] = {
                "id": object_id,
                "properties": item["properties"],
                "objectWriteTraceId": item.get("objectWriteTraceId"),
            }
            if new is not None and path.endswith("/batch/upsert"):
                result["new"] = new
            results.append(result)
        status = 201 if path.endswith("/batch/create") else 200
        return httpx.Response(
            status, json={"status": "COMPLETE", "results": results}, headers=self.headers
        )


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Responder:
    return lambda _: httpx.Response(status, json=body, headers=headers or {})


@asynccontextmanager
async def open_sink(
    hub: MockHubSpot,
    *,
    identity: FakeIdentity | None = None,
    clock: FakeClock | None = None,
    auth: dict[str, Any] | None = None,
    grants: MemoryGrantStore | None = None,
    **config: Any,
) -> AsyncIterator[HubSpotSink]:
    settings = HubSpotConnectionConfig.validate_for_connection({"auth": auth or PRIVATE, **config})

    def client_factory(
        *,
        timeout_seconds: float = 15.0,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 10,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        return http_client_factory(
            timeout_seconds=timeout_seconds, transport=httpx.MockTransport(hub)
        )

    context = SinkContext(
        tenant_id="t_42",
        connection_id="c_hs",
        connector="hubspot",
        config=settings,
        clock=clock or FakeClock(),
        http_client_factory=client_factory,
        identity=FakeIdentity() if identity is None else identity,
        grant_store=grants,
        logger=logging.getLogger("test.hubspot.sink"),
    )
    async with HubSpotSink(context) as sink:
        yield sink


def _errors(outcome: BatchOutcome) -> dict[str, ConnectorError]:
    return {f.delivery_id: f.error for f in outcome.failed}


def _delivered(outcome: BatchOutcome) -> dict[str, DeliveryResult]:
    return {d.delivery_id: d for d in outcome.delivered}


def _linked(*pairs: tuple[EntityKind, str, str]) -> FakeIdentity:
    return FakeIdentity({(kind, qid): oid for kind, qid, oid in pairs})


# -- the class contract -------------------------------------------------------------------------


def test_class_attributes() -> None:
    assert HubSpotSink.name == "hubspot"
    assert HubSpotSink.max_batch_size == 100
    assert HubSpotSink.config_class is HubSpotConnectionConfig
    limit = HubSpotSink.default_rate_limit
    assert limit is not None
    assert (limit.rate, limit.per_seconds) == (100, 10)


async def test_setup_needs_an_identity_resolver() -> None:
    settings = HubSpotConnectionConfig.validate_for_connection({"auth": PRIVATE})
    context = SinkContext(tenant_id="t", connection_id="c", connector="hubspot", config=settings)
    with pytest.raises(PermanentError, match="identity resolver"):
        async with HubSpotSink(context):
            pass


async def test_setup_refuses_plain_http_without_the_private_network_flag() -> None:
    settings = HubSpotConnectionConfig.validate_for_connection(
        {"auth": PRIVATE, "base_url": "http://127.0.0.1:1"}, allow_private_networks=True
    )
    context = SinkContext(
        tenant_id="t",
        connection_id="c",
        connector="hubspot",
        config=settings,
        identity=FakeIdentity(),
    )
    with pytest.raises(PermanentError, match="https"):
        async with HubSpotSink(context):
            pass


# -- linked entities and chunking -----------------------------------------------------------------


async def test_linked_companies_are_updated_by_id_in_chunks_of_100() -> None:
    hub = MockHubSpot()
    identity = _linked(*[(C, f"co_{i}", str(500 + i)) for i in range(250)])
    records = [company(f"co_{i}") for i in range(250)]
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver(records)

    assert len(outcome.delivered) == 250
    updates = hub.calls("/crm/v3/objects/companies/batch/update")
    assert [len(_body(r)["inputs"]) for r in updates] == [100, 100, 50]
    assert hub.paths() == ["/crm/v3/objects/companies/batch/update"] * 3
    first = _body(updates[0])["inputs"][0]
    assert first["id"] == "500"
    assert first["objectWriteTraceId"] == records[0].delivery_id
    assert first["properties"]["queast_id"] == "co_0"
    assert updates[0].headers["authorization"] == "Bearer pat-secret-token"
    result = _delivered(outcome)[records[7].delivery_id]
    assert (result.partner_object_id, result.status_code) == ("507", 200)


async def test_several_versions_of_one_entity_are_written_once_with_the_newest() -> None:
    hub = MockHubSpot()
    older = company("co_1", version=3, name="Old")
    newer = company("co_1", version=4, name="New")
    async with open_sink(hub, identity=_linked((C, "co_1", "501"))) as sink:
        outcome = await sink.deliver([newer, older])
    inputs = _body(hub.calls("batch/update")[0])["inputs"]
    assert [i["properties"]["name"] for i in inputs] == ["New"]
    assert inputs[0]["objectWriteTraceId"] == newer.delivery_id
    assert {d.partner_object_id for d in outcome.delivered} == {"501"}
    assert len(outcome.delivered) == 2


# -- first links ---------------------------------------------------------------------------------


async def test_no_match_creates_by_upsert_on_the_queast_id_and_links_it() -> None:
    hub = MockHubSpot()
    identity = FakeIdentity()
    record = company("co_1", domain="acme.example", domains=["acme.example", "acme.io"])
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([record])

    assert hub.paths() == [
        "/crm/v3/objects/companies/search",  # partner id, domains, LinkedIn
        "/crm/v3/objects/companies/search",  # nothing found: the name
        "/crm/v3/objects/companies/batch/upsert",
    ]
    exact, by_name = (_body(r) for r in hub.calls("search"))
    assert exact["filterGroups"] == [
        {"filters": [{"propertyName": "queast_id", "operator": "IN", "values": ["co_1"]}]},
        {
            "filters": [
                {"propertyName": "domain", "operator": "IN", "values": ["acme.example", "acme.io"]}
            ]
        },
    ]
    assert by_name["filterGroups"] == [
        {"filters": [{"propertyName": "name", "operator": "IN", "values": ["company co_1"]}]}
    ]
    assert "queast_id" in exact["properties"]
    assert exact["limit"] == 200
    upsert = _body(hub.calls("batch/upsert")[0])["inputs"][0]
    assert (upsert["id"], upsert["idProperty"]) == ("co_1", "queast_id")
    assert identity.created == [(C, "co_1", "9001")]
    assert identity.decided[0].outcome is IdentityOutcome.NO_MATCH
    assert _delivered(outcome)[record.delivery_id].partner_object_id == "9001"


async def test_a_single_candidate_links_and_is_updated_by_id_with_the_queast_id() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [
        {"id": "777", "properties": {"name": "Acme", "domain": "acme.example"}}
    ]
    identity = FakeIdentity()
    record = company("co_1", domain="acme.example")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([record])

    assert hub.paths() == [
        "/crm/v3/objects/companies/search",  # found by domain: no name lookup
        "/crm/v3/objects/companies/batch/update",
    ]
    update = _body(hub.calls("batch/update")[0])["inputs"][0]
    assert (update["id"], update["properties"]["queast_id"]) == ("777", "co_1")
    assert identity.decided[0].candidates[0].domains == ("acme.example",)
    assert identity.created == []
    assert _delivered(outcome)[record.delivery_id].partner_object_id == "777"


async def test_an_ambiguous_match_is_held_for_review_and_nothing_is_written() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [
        {"id": "1", "properties": {"domain": "acme.example"}},
        {"id": "2", "properties": {"domain": "acme.example"}},
    ]
    held = company("co_1", domain="acme.example")
    fine = company("co_2", domain="solo.example")
    async with open_sink(hub) as sink:
        outcome = await sink.deliver([held, fine])

    error = _errors(outcome)[held.delivery_id]
    assert isinstance(error, HeldForReviewError)
    assert "rev_co_1" in error.reason
    upserts = hub.calls("batch/upsert")
    assert [i["id"] for r in upserts for i in _body(r)["inputs"]] == ["co_2"]
    assert not hub.calls("batch/update")


def _searched(hub: MockHubSpot, path: str = "/search") -> list[tuple[str, str]]:
    return [
        (f["propertyName"], value)
        for request in hub.calls(path)
        for group in _body(request)["filterGroups"]
        for f in group["filters"]
        for value in f["values"]
    ]


async def test_first_links_of_a_whole_batch_are_packed_into_few_searches() -> None:
    hub = MockHubSpot()
    records = [
        company(
            f"co_{i}",
            domain=f"company-{i:03}.example.com",
            linkedin_url=f"https://www.linkedin.com/company/company-{i:03}",
        )
        for i in range(100)
    ]
    async with open_sink(hub) as sink:
        outcome = await sink.deliver(records)
    assert len(outcome.delivered) == 100
    searches = hub.calls("/companies/search")
    # 100 entities x (queast id, domain, LinkedIn URL), then their 100 names
    assert len(searches) == 5
    assert all(len(r.content) <= 3000 for r in searches)
    assert all(r.headers["content-type"] == "application/json" for r in searches)
    searched = _searched(hub)
    assert len(searched) == 400
    assert ("domain", "company-042.example.com") in searched
    assert ("name", "company co_42") in searched
    assert ("linkedin_company_page", "https://www.linkedin.com/company/company-042") in searched
    assert [len(_body(r)["inputs"]) for r in hub.calls("batch/upsert")] == [100]


async def test_contacts_are_looked_up_by_email_and_linkedin_url_in_one_search() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    records = [person(f"p_{i}", linkedin_url=f"linkedin.com/in/p-{i}") for i in range(12)]
    async with open_sink(hub, clock=clock) as sink:
        outcome = await sink.deliver(records)
    assert len(outcome.delivered) == 12
    (search,) = hub.calls("/contacts/search")
    assert [g["filters"][0]["propertyName"] for g in _body(search)["filterGroups"]] == [
        "queast_id",
        "email",
        "queast_linkedin_url",
    ]
    assert len(_searched(hub)) == 12 * 4  # the raw URL and its canonical form
    assert clock.slept == []


async def test_concurrent_writes_of_a_connection_share_their_searches() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [{"id": "7", "properties": {"domain": "b.example"}}]
    identity = ListingIdentity({C: ["domain"]})
    one, two = company("co_a", domain="a.example"), company("co_b", domain="b.example")
    async with open_sink(hub, identity=identity) as sink:
        first, second = await asyncio.gather(sink.deliver([one]), sink.deliver([two]))
    assert _searched(hub) == [("domain", "a.example"), ("domain", "b.example")]
    assert len(hub.calls("/search")) == 1
    assert _delivered(second)[two.delivery_id].partner_object_id == "7"
    assert identity.created == [(C, "co_a", "9001")]
    assert first.failed == ()


async def test_search_results_are_matched_back_to_the_entities_they_answer() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [
        {"id": "1", "properties": {"domain": "WWW.Acme.example", "name": "Acme"}},
        {
            "id": "2",
            "properties": {"linkedin_company_page": "http://linkedin.com/company/Globex/"},
        },
        {"id": "3", "properties": {"queast_id": "co_3", "domain": "elsewhere.example"}},
        {"id": "4", "properties": {"domain": "unrelated.example"}},
    ]
    identity = FakeIdentity()
    acme = company("co_1", domain="acme.example")
    globex = company("co_2", domain="globex.example", linkedin_url="linkedin.com/company/globex")
    own = company("co_3", domain="initech.example")
    new = company("co_4", domain="new.example")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([acme, globex, own, new])
    offered = {d.queast_id: [c.partner_object_id for c in d.candidates] for d in identity.decided}
    assert offered == {"co_1": ["1"], "co_2": ["2"], "co_3": ["3"], "co_4": []}
    delivered = _delivered(outcome)
    assert [delivered[r.delivery_id].partner_object_id for r in (acme, globex, own)] == [
        "1",
        "2",
        "3",
    ]
    assert identity.created == [(C, "co_4", "9001")]


async def test_names_are_looked_up_only_for_companies_nothing_earlier_found() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [{"id": "1", "properties": {"domain": "acme.example"}}]
    found = company("co_1", domain="acme.example", name="Acme")
    missing = company("co_2", domain="globex.example", name="Globex")
    nameless = company("co_3", domain="initech.example", name=None)
    async with open_sink(hub) as sink:
        await sink.deliver([found, missing, nameless])
    filtered = [
        {g["filters"][0]["propertyName"] for g in _body(r)["filterGroups"]}
        for r in hub.calls("/search")
    ]
    assert filtered == [{"queast_id", "domain"}, {"name"}]
    assert [v for p, v in _searched(hub) if p == "name"] == ["globex"]


async def test_no_name_lookup_when_the_connection_does_not_match_by_name() -> None:
    hub = MockHubSpot()
    identity = ListingIdentity({C: ["domain", "linkedin_url"]})
    async with open_sink(hub, identity=identity) as sink:
        await sink.deliver([company("co_1", domain="acme.example", linkedin_url=None)])
    assert _searched(hub) == [("domain", "acme.example")]


async def test_a_name_strategy_ordered_first_is_looked_up_for_every_company() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [{"id": "1", "properties": {"domain": "acme.example"}}]
    identity = ListingIdentity({C: ["partner_id", "company_name", "domain"]})
    async with open_sink(hub, identity=identity) as sink:
        await sink.deliver([company("co_1", domain="acme.example", name="Acme")])
    assert [v for p, v in _searched(hub) if p == "name"] == ["acme"]


async def test_unusable_candidates_lead_to_a_name_lookup_and_a_second_decision() -> None:
    hub = MockHubSpot()
    hub.search_results["companies"] = [
        {"id": "1", "properties": {"domain": "acme.example"}},
        {"id": "2", "properties": {"name": "ACME"}},
    ]
    identity = FakeIdentity(taken=["1"])  # the domain's object belongs to another entity
    record = company("co_1", domain="acme.example", name="Acme")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([record])
    assert [(d.queast_id, d.outcome) for d in identity.decided] == [
        ("co_1", IdentityOutcome.NO_MATCH),
        ("co_1", IdentityOutcome.LINKED),
    ]
    assert [c.partner_object_id for c in identity.decided[1].candidates] == ["1", "2"]
    assert _delivered(outcome)[record.delivery_id].partner_object_id == "2"
    assert not hub.calls("batch/upsert")


async def test_search_pages_are_followed_to_the_last() -> None:
    hub = MockHubSpot()
    pages = [
        {
            "total": 3,
            "results": [{"id": "1", "properties": {"domain": "a.example"}}],
            "paging": {"next": {"after": "1"}},
        },
        {
            "total": 3,
            "results": [{"id": "2", "properties": {"domain": "b.example"}}],
            "paging": {"next": {"after": "2"}},
        },
        {"total": 3, "results": [{"id": "3", "properties": {"domain": "c.example"}}]},
    ]
    for page in pages:
        hub.script("/companies/search", _json(200, page))
    identity = ListingIdentity({C: ["domain"]})
    records = [company(f"co_{n}", domain=f"{n}.example") for n in "abc"]
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver(records)
    bodies = [_body(r) for r in hub.calls("/companies/search")]
    assert [b.get("after") for b in bodies] == [None, "1", "2"]
    assert all(b["filterGroups"] == bodies[0]["filterGroups"] for b in bodies)
    assert {d.partner_object_id for d in outcome.delivered} == {"1", "2", "3"}


async def test_a_failed_search_fails_the_entities_it_carried() -> None:
    hub = MockHubSpot()
    hub.script("/companies/search", _json(400, {"category": "VALIDATION_ERROR"}))
    identity = ListingIdentity({C: ["domain"]})
    record = company("co_1", domain="acme.example")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([record])
    assert isinstance(_errors(outcome)[record.delivery_id], PermanentError)
    assert identity.decided == []
    assert not hub.calls("batch/upsert")


# -- people and associations -------------------------------------------------------------------


async def test_people_are_associated_to_their_linked_company() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"), (P, "p_2", "602"))
    with_company = person("p_1", company_id="co_1")
    unknown_company = person("p_2", company_id="co_missing")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([with_company, unknown_company])

    associations = hub.calls("/crm/v4/associations/contacts/companies/batch/associate/default")
    assert [_body(r) for r in associations] == [
        {"inputs": [{"from": {"id": "601"}, "to": {"id": "501"}}]}
    ]
    assert len(outcome.delivered) == 2


async def test_a_company_created_in_the_same_batch_is_associated() -> None:
    hub = MockHubSpot()
    async with open_sink(hub) as sink:
        await sink.deliver([person("p_1", company_id="co_1"), company("co_1")])
    assert hub.paths() == [
        "/crm/v3/objects/companies/search",
        "/crm/v3/objects/companies/search",
        "/crm/v3/objects/companies/batch/upsert",
        "/crm/v3/objects/contacts/search",
        "/crm/v3/objects/contacts/batch/upsert",
        "/crm/v4/associations/contacts/companies/batch/associate/default",
    ]
    pair = _body(hub.calls("associate/default")[0])["inputs"][0]
    assert pair == {"from": {"id": "9002"}, "to": {"id": "9001"}}


async def test_a_failed_association_fails_only_that_person() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"), (P, "p_2", "602"))
    hub.script(
        "associate/default",
        _json(
            207,
            {
                "status": "COMPLETE",
                "results": [{"fromObjectId": 602, "toObjectId": 501}],
                "numErrors": 1,
                "errors": [{"category": "VALIDATION_ERROR", "context": {"fromObjectId": ["601"]}}],
            },
        ),
    )
    one, two = person("p_1", company_id="co_1"), person("p_2", company_id="co_1")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([one, two])
    assert isinstance(_errors(outcome)[one.delivery_id], PermanentError)
    assert two.delivery_id in _delivered(outcome)


async def test_a_person_whose_association_was_not_sent_is_not_reported_delivered() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    hub.script("contacts/batch/upsert", _json(429, TEN_SECONDLY))
    written = person("p_1", company_id="co_1")  # updated by id, then the run stops
    limited = person("p_2", company_id="co_1")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([written, limited])
    failures = {f.delivery_id: f for f in outcome.failed}
    assert isinstance(failures[written.delivery_id].error, BackpressureError)
    assert failures[written.delivery_id].attempted is False
    assert failures[limited.delivery_id].attempted is True
    assert not hub.calls("associate/default")


# -- people written before their company ---------------------------------------------------------


ASSOCIATE = "/crm/v4/associations/contacts/companies/batch/associate/default"


def _association_pairs(hub: MockHubSpot) -> list[tuple[str, str]]:
    """Every ``(contact id, company id)`` input sent to the contact -> company endpoint."""
    return [
        (i["from"]["id"], i["to"]["id"]) for r in hub.calls(ASSOCIATE) for i in _body(r)["inputs"]
    ]


def _expected_pairs(identity: FakeIdentity, people: dict[str, str]) -> list[tuple[str, str]]:
    """The ``(contact id, company id)`` pairs of ``{person: company}``, sorted."""
    return sorted(
        (identity.links[(P, person_id)], identity.links[(C, company_id)])
        for person_id, company_id in people.items()
    )


class RecordingIdentity(FakeIdentity):
    """A :class:`FakeIdentity` that records ``associated`` calls and how many
    ``people_waiting`` calls run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.associated_calls: list[tuple[str, list[str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def people_waiting(self, company_id: str) -> Mapping[str, str]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # let the other reads of the write start
            return await super().people_waiting(company_id)
        finally:
            self.in_flight -= 1

    async def associated(self, company_id: str, person_ids: Sequence[str]) -> None:
        self.associated_calls.append((company_id, list(person_ids)))
        await super().associated(company_id, person_ids)


async def test_people_written_before_their_companies_are_associated_by_the_companies_write() -> (
    None
):
    hub = MockHubSpot()
    identity = RecordingIdentity()
    companies_of = {f"p_{i}": f"co_{i % 3}" for i in range(7)}
    people = [person(p, company_id=c) for p, c in companies_of.items()]
    async with open_sink(hub, identity=identity) as sink:
        first = await sink.deliver(people)
        assert first.failed == ()
        assert not hub.calls(ASSOCIATE), "no company linked yet: nothing to associate"
        assert identity.waiting == {
            "co_0": {"p_0", "p_3", "p_6"},
            "co_1": {"p_1", "p_4"},
            "co_2": {"p_2", "p_5"},
        }
        second = await sink.deliver([company(f"co_{n}") for n in range(3)])
        assert second.failed == ()
        again = await sink.deliver([company("co_0")])  # nobody waits any more
        assert again.failed == ()

    assert len(hub.calls(ASSOCIATE)) == 1, "every waiting contact in one request"
    assert sorted(_association_pairs(hub)) == _expected_pairs(identity, companies_of)
    assert identity.waiting == {"co_0": set(), "co_1": set(), "co_2": set()}
    assert sorted(identity.associated_calls) == [
        ("co_0", ["p_0", "p_3", "p_6"]),
        ("co_1", ["p_1", "p_4"]),
        ("co_2", ["p_2", "p_5"]),
    ]


async def test_waiting_contacts_are_associated_in_requests_of_at_most_100() -> None:
    hub = MockHubSpot()
    identity = FakeIdentity()
    companies_of = {f"p_{i}": "co_1" for i in range(150)}
    async with open_sink(hub, identity=identity) as sink:
        first = await sink.deliver([person(p, company_id=c) for p, c in companies_of.items()])
        assert first.failed == ()
        second = await sink.deliver([company("co_1")])
    assert second.failed == ()
    assert [len(_body(r)["inputs"]) for r in hub.calls(ASSOCIATE)] == [100, 50]
    assert sorted(_association_pairs(hub)) == _expected_pairs(identity, companies_of)
    assert identity.waiting == {"co_1": set()}


async def test_the_people_waiting_for_a_writes_companies_are_read_eight_at_a_time() -> None:
    hub = MockHubSpot()
    identity = RecordingIdentity()
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([company(f"co_{n}") for n in range(20)])
    assert outcome.failed == ()
    assert identity.most_in_flight == 8
    assert not hub.calls(ASSOCIATE)


async def test_a_person_written_with_its_company_is_associated_directly_without_waiting() -> None:
    hub = MockHubSpot()
    identity = RecordingIdentity()
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([person("p_1", company_id="co_1"), company("co_1")])
    assert outcome.failed == ()
    assert _association_pairs(hub) == _expected_pairs(identity, {"p_1": "co_1"})
    assert identity.waiting == {}, "the company was linked: no wait recorded"
    assert identity.associated_calls == []


@pytest.mark.parametrize("company_lands", ["before_the_wait", "after_the_wait"])
async def test_a_company_linked_while_its_person_is_written_is_still_associated(
    company_lands: str,
) -> None:
    """Whichever side reads second associates: the person (its wait finds the link) or the
    company (its ``people_waiting`` finds the person); the pair is sent once."""
    hub = MockHubSpot()
    identity = RecordingIdentity()
    landed: list[BatchOutcome] = []
    async with open_sink(hub, identity=identity) as sink:
        real_wait = identity.wait_for_company

        async def company_lands_meanwhile(company_id: str, person_id: str) -> str | None:
            if company_lands == "after_the_wait":
                found = await real_wait(company_id, person_id)
                landed.append(await sink.deliver([company("co_1")]))
                return found
            landed.append(await sink.deliver([company("co_1")]))
            return await real_wait(company_id, person_id)

        identity.wait_for_company = company_lands_meanwhile  # type: ignore[method-assign]
        outcome = await sink.deliver([person("p_1", company_id="co_1")])

    assert outcome.failed == ()
    assert [o.failed for o in landed] == [()]
    assert _association_pairs(hub) == _expected_pairs(identity, {"p_1": "co_1"})
    assert identity.waiting == {"co_1": set()}
    assert identity.associated_calls == [("co_1", ["p_1"])]


async def test_a_failed_association_request_leaves_the_waits_for_the_retry() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    identity = RecordingIdentity()
    async with open_sink(hub, identity=identity, clock=clock) as sink:
        await sink.deliver([person("p_1", company_id="co_1"), person("p_2", company_id="co_1")])
        hub.script(ASSOCIATE, lambda _: httpx.Response(503, headers={"Retry-After": "7"}))
        the_company = company("co_1")
        failed = await sink.deliver([the_company])
        (failure,) = failed.failed
        assert type(failure.error) is TransientError
        assert failure.attempted is True
        assert identity.associated_calls == []
        assert identity.waiting == {"co_1": {"p_1", "p_2"}}

        clock.advance(10)
        retried = await sink.deliver([company("co_1")])
    assert retried.failed == ()
    assert identity.associated_calls == [("co_1", ["p_1", "p_2"])]
    assert identity.waiting == {"co_1": set()}


async def test_a_late_association_that_fails_fails_the_person_and_keeps_its_wait() -> None:
    hub = MockHubSpot()
    identity = RecordingIdentity()
    the_person = person("p_1", company_id="co_1")
    async with open_sink(hub, identity=identity) as sink:
        real_wait = identity.wait_for_company

        async def company_lands_meanwhile(company_id: str, person_id: str) -> str | None:
            await sink.deliver([company("co_1")])
            hub.script(
                ASSOCIATE,
                _json(
                    207,
                    {
                        "status": "COMPLETE",
                        "results": [],
                        "numErrors": 1,
                        "errors": [
                            {
                                "category": "VALIDATION_ERROR",
                                "context": {"fromObjectId": [identity.links[(P, person_id)]]},
                            }
                        ],
                    },
                ),
            )
            return await real_wait(company_id, person_id)

        identity.wait_for_company = company_lands_meanwhile  # type: ignore[method-assign]
        outcome = await sink.deliver([the_person])
    assert isinstance(_errors(outcome)[the_person.delivery_id], PermanentError)
    assert len(hub.calls(ASSOCIATE)) == 1
    assert identity.associated_calls == []
    assert identity.waiting == {"co_1": {"p_1"}}


NO_RESULT = {"status": "COMPLETE", "results": []}
GONE = {
    "status": "COMPLETE",
    "results": [],
    "numErrors": 1,
    "errors": [{"category": "VALIDATION_ERROR", "context": {"fromObjectId": ["9001"]}}],
}


@pytest.mark.parametrize(
    ("answer", "company_fails"), [(NO_RESULT, True), (GONE, False)], ids=["transient", "gone"]
)
async def test_a_waiting_contact_whose_association_fails_alone_keeps_its_wait(
    answer: dict[str, Any], company_fails: bool
) -> None:
    """A transient failure brings the company's record back; a permanent one (the contact
    is gone) does not hold it. Either way the wait stays."""
    hub = MockHubSpot()
    identity = RecordingIdentity()
    async with open_sink(hub, identity=identity) as sink:
        await sink.deliver([person("p_1", company_id="co_1")])
        assert identity.links[(P, "p_1")] == "9001"
        hub.script(ASSOCIATE, _json(207, answer))
        the_company = company("co_1")
        outcome = await sink.deliver([the_company])
    errors = _errors(outcome)
    if company_fails:
        assert type(errors[the_company.delivery_id]) is TransientError
    else:
        assert the_company.delivery_id in _delivered(outcome)
    assert len(hub.calls(ASSOCIATE)) == 1
    assert identity.associated_calls == []
    assert identity.waiting == {"co_1": {"p_1"}}


async def test_a_company_whose_waiting_contacts_were_not_sent_is_not_reported_delivered() -> None:
    hub = MockHubSpot()
    identity = RecordingIdentity()
    async with open_sink(hub, identity=identity) as sink:
        await sink.deliver([person("p_1", company_id="co_1")])
        hub.script("contacts/batch/upsert", _json(429, TEN_SECONDLY))
        the_company, limited = company("co_1"), person("p_2")
        outcome = await sink.deliver([the_company, limited])
    failures = {f.delivery_id: f for f in outcome.failed}
    assert isinstance(failures[the_company.delivery_id].error, BackpressureError)
    assert failures[the_company.delivery_id].attempted is False
    assert failures[limited.delivery_id].attempted is True
    assert _association_pairs(hub) == []
    assert identity.waiting == {"co_1": {"p_1"}}


# -- against the HubSpot sandbox ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as server:
        yield server


@asynccontextmanager
async def sandbox_sink(
    sandbox: HubSpotSandbox,
    token: str,
    identity: FakeIdentity,
    *,
    client_factory: HttpClientFactory = http_client_factory,
    **config: Any,
) -> AsyncIterator[HubSpotSink]:
    """A set-up sink writing to ``sandbox`` with the private app ``token``."""
    settings = HubSpotConnectionConfig.validate_for_connection(
        {"auth": {"type": "private_app", "token": token}, "base_url": sandbox.url, **config},
        allow_private_networks=True,
    )
    context = SinkContext(
        tenant_id="t_42",
        connection_id="c_hs",
        connector="hubspot",
        config=settings,
        allow_private_networks=True,
        http_client_factory=client_factory,
        identity=identity,
    )
    async with HubSpotSink(context) as sink:
        yield sink


async def test_lanes_writing_people_and_companies_concurrently_associate_every_contact(
    sandbox: HubSpotSandbox,
) -> None:
    """Four lanes of one connection, people and companies mixed in any order: every
    contact ends associated to its company, and nobody waits."""
    sandbox.state.reset()
    portal = sandbox.add_portal(1, private_app_token="pat-lanes")
    identity = FakeIdentity()
    companies_of = {f"p_{i}": f"co_{(i + 1) % 8}" for i in range(32)}  # in another lane
    records = [
        *(person(p, company_id=c) for p, c in companies_of.items()),
        *(company(f"co_{n}") for n in range(8)),
    ]
    async with sandbox_sink(sandbox, "pat-lanes", identity) as sink:

        async def lane(mine: list[OutboundRecord]) -> list[BatchOutcome]:
            return [await sink.deliver(mine[i : i + 5]) for i in range(0, len(mine), 5)]

        lanes = await asyncio.gather(*(lane(records[k::4]) for k in range(4)))
    assert [o.failed for outcomes in lanes for o in outcomes] == [()] * sum(map(len, lanes))
    contacts = {c["properties"]["queast_id"]: c["id"] for c in sandbox.objects(portal, "contacts")}
    stored = {c["properties"]["queast_id"]: c["id"] for c in sandbox.objects(portal, "companies")}
    for person_id, company_id in companies_of.items():
        associated = sandbox.associations(portal, "contacts", contacts[person_id], "companies")
        assert associated == [(stored[company_id], 279)], person_id
    assert all(not waiting for waiting in identity.waiting.values())


# -- multi-status ------------------------------------------------------------------------------


async def test_a_207_fails_the_named_records_and_delivers_the_rest() -> None:
    hub = MockHubSpot()
    records = [company(f"co_{i}") for i in range(3)]
    identity = _linked(*[(C, f"co_{i}", str(500 + i)) for i in range(3)])
    hub.script(
        "batch/update",
        _json(
            207,
            {
                "status": "COMPLETE",
                "results": [
                    {"id": "500", "objectWriteTraceId": records[0].delivery_id},
                    {"id": "502", "objectWriteTraceId": records[2].delivery_id},
                ],
                "numErrors": 1,
                "errors": [
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": "Property values were not valid",
                        "context": {"objectWriteTraceId": [records[1].delivery_id]},
                        "errors": [
                            {
                                "code": "PROPERTY_DOESNT_EXIST",
                                "context": {"propertyName": ["queast_industry"]},
                            }
                        ],
                    }
                ],
            },
        ),
    )
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver(records)
    error = _errors(outcome)[records[1].delivery_id]
    assert isinstance(error, PermanentError)
    assert "PROPERTY_DOESNT_EXIST" in error.reason
    delivered = _delivered(outcome)
    assert delivered[records[0].delivery_id].status_code == 207
    assert delivered[records[2].delivery_id].partner_object_id == "502"


async def test_a_contract_violation_fails_that_record_alone() -> None:
    hub = MockHubSpot()
    bad = signal("s_1", "co_1", contract_mode="weird")
    good = company("co_1")
    async with open_sink(hub, identity=_linked((C, "co_1", "501"))) as sink:
        outcome = await sink.deliver([bad, good])
    assert isinstance(_errors(outcome)[bad.delivery_id], PermanentError)
    assert good.delivery_id in _delivered(outcome)


# -- rate limits and other statuses ----------------------------------------------------------------


TEN_SECONDLY = {
    "status": "error",
    "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c",
    "policyName": "TEN_SECONDLY_ROLLING",
}
DAILY = {**TEN_SECONDLY, "message": "You have reached your daily limit.", "policyName": "DAILY"}


async def test_a_ten_secondly_429_is_backpressure_and_defers_the_rest() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    headers = {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0"}
    hub.script("batch/update", _json(429, TEN_SECONDLY, headers))
    records = [company("co_1"), person("p_1")]
    async with open_sink(hub, identity=identity, clock=clock) as sink:
        outcome = await sink.deliver(records)
        failures = {f.delivery_id: f for f in outcome.failed}
        sent = failures[records[0].delivery_id]
        deferred = failures[records[1].delivery_id]
        assert isinstance(sent.error, BackpressureError)
        assert sent.attempted is True
        assert sent.error.status_code == 429
        assert "TEN_SECONDLY_ROLLING" in sent.error.reason
        assert sent.error.retry_after == pytest.approx(10.05)  # the window's oldest request
        assert isinstance(deferred.error, BackpressureError)
        assert deferred.attempted is False
        assert len(hub.requests) == 1

        again = await sink.deliver([company("co_1")])  # still blocked: no request
        assert isinstance(again.failed[0].error, BackpressureError)
        assert again.failed[0].attempted is False
        assert len(hub.requests) == 1
        clock.advance(10.1)
        assert len((await sink.deliver([company("co_1")])).delivered) == 1


async def test_a_daily_429_is_quota_exhausted_until_midnight_utc() -> None:
    hub = MockHubSpot()
    clock = FakeClock(wall=datetime(2026, 11, 26, 20, 30, tzinfo=UTC).timestamp())
    hub.script("batch/update", _json(429, DAILY))
    async with open_sink(hub, identity=_linked((C, "co_1", "501")), clock=clock) as sink:
        outcome = await sink.deliver([company("co_1")])
        error = outcome.failed[0].error
        assert isinstance(error, QuotaExhaustedError)
        assert error.retry_after == pytest.approx(3.5 * 3600)
        later = await sink.deliver([company("co_1"), company("co_2")])
    assert all(isinstance(f.error, QuotaExhaustedError) and f.attempted for f in later.failed)
    assert len(hub.requests) == 1


async def test_a_locked_423_is_transient_for_at_least_two_seconds_and_the_rest_goes_on() -> None:
    hub = MockHubSpot()
    hub.script("companies/batch/update", _json(423, {"status": "error", "category": "LOCKED"}))
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    locked, other = company("co_1"), person("p_1")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([locked, other])
    error = _errors(outcome)[locked.delivery_id]
    assert type(error) is TransientError
    assert error.retry_after is not None
    assert error.retry_after >= 2
    assert other.delivery_id in _delivered(outcome)


async def test_a_server_error_stops_the_batch() -> None:
    hub = MockHubSpot()
    hub.script(
        "companies/batch/update", lambda _: httpx.Response(503, headers={"Retry-After": "7"})
    )
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    first, second = company("co_1"), person("p_1")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([first, second])
    failures = {f.delivery_id: f for f in outcome.failed}
    assert isinstance(failures[first.delivery_id].error, TransientError)
    assert failures[first.delivery_id].attempted is True
    assert failures[second.delivery_id].attempted is False
    assert len(hub.requests) == 1


async def test_rate_limit_headers_correct_the_bucket() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    hub.headers = {
        "X-HubSpot-RateLimit-Max": "10",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    identity = _linked((C, "co_1", "501"), (C, "co_2", "502"))
    async with open_sink(hub, identity=identity, clock=clock) as sink:
        await sink.deliver([company("co_1")])
        assert sink.client.limiter.burst_limit == 10
        outcome = await sink.deliver([company("co_2")])
    assert len(outcome.delivered) == 1
    assert clock.slept == [pytest.approx(1.0)]  # 10 per 10 s: one token a second


async def test_a_long_wait_of_our_own_limiter_defers_without_sending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    identity = _linked(*[(C, f"co_{i}", str(i)) for i in range(3)])
    async with open_sink(hub, identity=identity, clock=clock, rate_limit_per_second=0.05) as sink:
        await sink.deliver([company("co_0")])  # a window of one request per 10 s
        outcome = await sink.deliver([company("co_1")])
    failure = outcome.failed[0]
    assert isinstance(failure.error, BackpressureError)
    assert failure.attempted is False
    assert failure.error.retry_after == pytest.approx(10.05)
    assert len(hub.requests) == 1
    assert clock.slept == []


async def test_a_wait_within_one_window_is_slept_with_the_batch_held() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    identity = _linked(*[(C, f"co_{i}", str(i)) for i in range(5)])
    async with open_sink(hub, identity=identity, clock=clock, rate_limit_per_second=0.4) as sink:
        outcomes = [await sink.deliver([company(f"co_{i}")]) for i in range(5)]
    assert all(len(o.delivered) == 1 for o in outcomes)
    # 4 per 10 s, a bucket of 3: 2.5 s for the fourth token, then the window's 10.05 s
    assert clock.slept == [pytest.approx(2.5), pytest.approx(7.55)]
    assert len(hub.requests) == 5


# -- authentication ---------------------------------------------------------------------------


OAUTH = {"type": "oauth", "client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}


async def test_oauth_refreshes_before_the_first_call_and_before_expiry() -> None:
    hub = MockHubSpot()
    clock = FakeClock()
    grants = MemoryGrantStore()
    auth = {**OAUTH, "access_token": "stored", "expires_at": clock.wall + 90}
    identity = _linked((C, "co_1", "501"))
    async with open_sink(hub, identity=identity, clock=clock, auth=auth, grants=grants) as sink:
        await sink.deliver([company("co_1")])
        clock.advance(31)  # 59 s left
        await sink.deliver([company("co_1")])
    assert hub.paths() == [
        "/crm/v3/objects/companies/batch/update",
        "/oauth/v1/token",
        "/crm/v3/objects/companies/batch/update",
    ]
    auth_headers = [r.headers.get("authorization") for r in hub.calls("batch/update")]
    assert auth_headers == ["Bearer stored", "Bearer at-1"]
    assert [t.access_token.get_secret_value() for t in grants.saved] == ["at-1"]


async def test_a_401_refreshes_once_and_retries() -> None:
    hub = MockHubSpot()
    hub.script("batch/update", lambda _: httpx.Response(401))
    auth = {**OAUTH, "access_token": "stale", "expires_at": FakeClock().wall + 3600}
    async with open_sink(hub, identity=_linked((C, "co_1", "501")), auth=auth) as sink:
        outcome = await sink.deliver([company("co_1")])
    assert len(outcome.delivered) == 1
    assert hub.paths() == [
        "/crm/v3/objects/companies/batch/update",
        "/oauth/v1/token",
        "/crm/v3/objects/companies/batch/update",
    ]


async def test_a_second_401_is_an_authentication_error() -> None:
    hub = MockHubSpot()
    hub.script("batch/update", lambda _: httpx.Response(401), times=2)
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    async with open_sink(hub, identity=identity, auth=OAUTH) as sink:
        outcome = await sink.deliver([company("co_1"), person("p_1")])
    assert all(isinstance(f.error, AuthenticationError) for f in outcome.failed)
    assert all(f.attempted for f in outcome.failed)  # the service must see it to park
    assert len(hub.calls("/oauth/v1/token")) == 2  # first token, then the one renewal
    assert len(hub.calls("batch/update")) == 2


async def test_a_private_app_401_is_an_authentication_error_without_a_retry() -> None:
    hub = MockHubSpot()
    hub.script("batch/update", lambda _: httpx.Response(401))
    async with open_sink(hub, identity=_linked((C, "co_1", "501"))) as sink:
        outcome = await sink.deliver([company("co_1")])
    assert isinstance(outcome.failed[0].error, AuthenticationError)
    assert len(hub.requests) == 1


# -- notes and deletions ------------------------------------------------------------------------


async def test_signals_and_job_ads_become_notes_on_the_linked_company() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    note = signal("s_1", "co_1", person_ids=["p_1", "p_unknown"])
    ad = job_ad("ja_1", "co_1")
    waiting = signal("s_2", "co_unlinked")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([note, ad, waiting])

    inputs = _body(hub.calls("/notes/batch/create")[0])["inputs"]
    assert [i["objectWriteTraceId"] for i in inputs] == [note.delivery_id, ad.delivery_id]
    assert inputs[0]["associations"] == [
        {
            "to": {"id": "501"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
        },
        {
            "to": {"id": "601"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
        },
    ]
    assert "Queast job ad" in inputs[1]["properties"]["hs_note_body"]
    error = _errors(outcome)[waiting.delivery_id]
    assert type(error) is TransientError
    assert "not linked" in error.reason
    assert _delivered(outcome)[note.delivery_id].status_code == 201


async def test_notes_are_upserted_when_a_note_id_property_is_configured() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    note = signal("s_1", "co_1", person_ids=["p_1"])
    async with open_sink(hub, identity=identity, note_id_property="queast_note_id") as sink:
        outcome = await sink.deliver([note])
    assert hub.paths() == [
        "/crm/v3/objects/notes/batch/upsert",
        "/crm/v4/associations/notes/companies/batch/associate/default",
        "/crm/v4/associations/notes/contacts/batch/associate/default",
    ]
    upsert = _body(hub.calls("notes/batch/upsert")[0])["inputs"][0]
    assert (upsert["id"], upsert["idProperty"]) == ("queast-signal-s_1", "queast_note_id")
    assert _delivered(outcome)[note.delivery_id].partner_object_id == "9001"


async def test_deletions_archive_linked_objects_and_skip_unlinked_ones() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    gone_company = deleted(C, "co_1")
    gone_person = deleted(P, "p_1")
    never_linked = deleted(C, "co_2")
    async with open_sink(hub, identity=identity) as sink:
        outcome = await sink.deliver([gone_company, gone_person, never_linked])
    assert [_body(r) for r in hub.calls("/companies/batch/archive")] == [
        {"inputs": [{"id": "501"}]}
    ]
    assert [_body(r) for r in hub.calls("/contacts/batch/archive")] == [{"inputs": [{"id": "601"}]}]
    delivered = _delivered(outcome)
    assert delivered[gone_company.delivery_id].partner_object_id == "501"
    assert delivered[never_linked.delivery_id].partner_object_id is None
    assert delivered[never_linked.delivery_id].status_code == 204


# -- logs ----------------------------------------------------------------------------------------


async def test_logs_carry_ids_and_counts_never_tokens_or_personal_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MockHubSpot()
    hub.script("batch/upsert", _json(429, TEN_SECONDLY))
    with caplog.at_level(logging.DEBUG):
        async with open_sink(hub) as sink:
            await sink.deliver(
                [person("p_1", email="ada@secret.example"), company("co_1", domain="priv.example")]
            )
    events = [r.msg for r in caplog.records if r.name == "test.hubspot.sink"]
    written = next(r for r in caplog.records if r.msg == "hubspot.batch.written")
    assert written.__dict__["n_searches"] == 2  # the 429 stopped the batch before people
    assert written.__dict__["n_looked_up"] == 2  # one company by id and domain, then name
    assert "hubspot.batch.written" in events
    assert "hubspot.rate_limited" in events
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    for secret in ("pat-secret-token", "ada@secret.example", "priv.example", "Lovelace"):
        assert secret not in logged


# -- correlation and request ids on every request ----------------------------------------------


def _correlated(record: OutboundRecord, correlation_id: str) -> OutboundRecord:
    return record.model_copy(update={"correlation_id": correlation_id})


def _request_ids(hub: MockHubSpot) -> list[str]:
    ids = [r.headers.get("x-request-id", "") for r in hub.requests]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)  # one per request
    return ids


async def test_single_record_requests_carry_the_records_correlation_id() -> None:
    hub = MockHubSpot()
    acme = _correlated(company("co_1"), "corr-company")
    ada = _correlated(person("p_1", company_id="co_1"), "corr-person")
    async with open_sink(hub) as sink:
        outcome = await sink.deliver([ada, acme])
    assert len(outcome.delivered) == 2
    _request_ids(hub)
    seen = [(r.url.path, r.headers.get("x-correlation-id")) for r in hub.requests]
    assert seen == [
        ("/crm/v3/objects/companies/search", "corr-company"),  # the person's company lookup
        ("/crm/v3/objects/companies/search", "corr-company"),
        ("/crm/v3/objects/companies/batch/upsert", "corr-company"),
        ("/crm/v3/objects/contacts/search", "corr-person"),
        ("/crm/v3/objects/contacts/batch/upsert", "corr-person"),
        ("/crm/v4/associations/contacts/companies/batch/associate/default", "corr-person"),
    ]


async def test_note_requests_carry_the_notes_correlation_id() -> None:
    hub = MockHubSpot()
    identity = _linked((C, "co_1", "501"), (P, "p_1", "601"))
    note = _correlated(signal("s_1", "co_1", person_ids=["p_1"]), "corr-note")
    async with open_sink(hub, identity=identity, note_id_property="queast_note_id") as sink:
        await sink.deliver([note])
    _request_ids(hub)
    assert [(r.url.path, r.headers.get("x-correlation-id")) for r in hub.requests] == [
        ("/crm/v3/objects/notes/batch/upsert", "corr-note"),
        ("/crm/v4/associations/notes/companies/batch/associate/default", "corr-note"),
        ("/crm/v4/associations/notes/contacts/batch/associate/default", "corr-note"),
    ]

    created = MockHubSpot()
    async with open_sink(created, identity=identity) as sink:
        await sink.deliver([note])
    assert [r.headers.get("x-correlation-id") for r in created.calls("/notes/batch/create")] == [
        "corr-note"
    ]


async def test_a_batch_request_sends_a_request_id_and_logs_its_correlation_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MockHubSpot()
    first = _correlated(company("co_1"), "corr-b")
    second = _correlated(company("co_2"), "corr-a")
    with caplog.at_level(logging.DEBUG, logger="test.hubspot.sink"):
        async with open_sink(hub) as sink:
            await sink.deliver([first, second])
    request_ids = _request_ids(hub)
    upsert = hub.calls("/companies/batch/upsert")[0]
    assert "x-correlation-id" not in upsert.headers
    logged = {
        r.__dict__["request_id"]: r
        for r in caplog.records
        if r.name == "test.hubspot.sink" and r.msg == "hubspot.request.records"
    }
    entry = logged[upsert.headers["x-request-id"]]
    assert entry.levelno == logging.DEBUG
    assert entry.__dict__["correlation_ids"] == ["corr-a", "corr-b"]
    assert entry.__dict__["records"] == 2
    assert entry.__dict__["connection_id"] == "c_hs"
    assert set(logged) <= set(request_ids)
    assert "co-1.example" not in entry.getMessage() + repr(entry.__dict__)  # no payloads


async def test_the_sandbox_accepts_the_correlation_headers(sandbox: HubSpotSandbox) -> None:
    sandbox.state.reset()
    portal = sandbox.add_portal(1, private_app_token="pat-corr")
    sent: list[httpx.Headers] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request.headers)

    def recording(**options: Any) -> httpx.AsyncClient:
        client = http_client_factory(**options)
        client.event_hooks["request"].append(keep)
        return client

    records = [
        _correlated(company("co_1"), "corr-c"),
        _correlated(person("p_1", company_id="co_1"), "corr-p"),
    ]
    async with sandbox_sink(
        sandbox,
        "pat-corr",
        FakeIdentity(),
        client_factory=recording,
        note_id_property="queast_note_id",
    ) as sink:
        outcome = await sink.deliver(records)
        notes = await sink.deliver([_correlated(signal("s_1", "co_1"), "corr-n")])
    assert outcome.failed == ()
    assert notes.failed == ()
    assert {h.get("x-correlation-id") for h in sent} == {"corr-c", "corr-p", "corr-n"}
    assert all("x-request-id" in h for h in sent)
    assert len(sandbox.objects(portal, "notes")) == 1
