"""The local HubSpot sandbox, served for real on loopback, and the HubSpot sink against it.

The sandbox's time is a :class:`SteeredClock`: real for the sink's end-to-end tests (the
sink paces itself with real waits), frozen and moved by hand where a test is about rolling
windows or token expiry, so no outcome depends on how fast a loaded machine sends requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    DeliveryResult,
    EntityKind,
    HeldForReviewError,
    OutboundRecord,
    SinkContext,
    SystemClock,
    TransientError,
)
from connectors.hubspot import HubSpotConnectionConfig, HubSpotSink
from tests.sandboxes.hubspot import HubSpotSandbox, PortalLimits, SandboxState
from tests.unit.connectors.fakes import MemoryGrantStore
from tests.unit.connectors.hubspot.fakes import FakeIdentity, company, deleted, person, signal
from tests.unit.sandboxes.clocks import SteeredClock

TOKEN = "pat-sandbox-1"
C, P = EntityKind.COMPANY, EntityKind.PERSON


@pytest.fixture(scope="module")
def module_clock() -> SteeredClock:
    return SteeredClock()


@pytest.fixture
def clock(module_clock: SteeredClock) -> Iterator[SteeredClock]:
    """The sandbox's clock: real time unless the test freezes it; real again afterwards."""
    module_clock.release()
    yield module_clock
    module_clock.release()


@pytest.fixture(scope="module")
def sandbox(module_clock: SteeredClock) -> Iterator[HubSpotSandbox]:
    state = SandboxState(clock=module_clock.time, monotonic=module_clock.monotonic)
    with HubSpotSandbox(state=state) as server:
        yield server


@pytest.fixture
def portal(sandbox: HubSpotSandbox, clock: SteeredClock) -> int:
    """A fresh portal (its own token) per test, on a sandbox clock following real time."""
    sandbox.state.reset()
    return sandbox.add_portal(1, private_app_token=TOKEN)


def _headers(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def open_sink(
    sandbox: HubSpotSandbox,
    *,
    identity: FakeIdentity | None = None,
    auth: dict[str, Any] | None = None,
    grants: MemoryGrantStore | None = None,
    clock: SteeredClock | None = None,
    **config: Any,
) -> AsyncIterator[HubSpotSink]:
    settings = HubSpotConnectionConfig.validate_for_connection(
        {
            "auth": auth or {"type": "private_app", "token": TOKEN},
            "base_url": sandbox.url,
            **config,
        },
        allow_private_networks=True,
    )
    context = SinkContext(
        tenant_id="t_42",
        connection_id="c_hs",
        connector="hubspot",
        config=settings,
        allow_private_networks=True,
        identity=identity if identity is not None else FakeIdentity(),
        grant_store=grants,
        clock=clock if clock is not None else SystemClock(),
    )
    async with HubSpotSink(context) as sink:
        yield sink


async def deliver_all(
    sink: HubSpotSink, records: Sequence[OutboundRecord], *, rounds: int = 100
) -> tuple[dict[str, DeliveryResult], dict[str, ConnectorError]]:
    """Deliver like the service: records deferred by backpressure come back after
    ``retry_after``; anything else is final."""
    by_id = {r.delivery_id: r for r in records}
    pending = list(records)
    delivered: dict[str, DeliveryResult] = {}
    failed: dict[str, ConnectorError] = {}
    for _ in range(rounds):
        if not pending:
            break
        outcome = await sink.deliver(pending)
        delivered.update({d.delivery_id: d for d in outcome.delivered})
        deferred = [f for f in outcome.failed if isinstance(f.error, BackpressureError)]
        failed.update({f.delivery_id: f.error for f in outcome.failed if f not in deferred})
        pending = [by_id[f.delivery_id] for f in deferred]
        if deferred:
            await asyncio.sleep(min(getattr(f.error, "retry_after", 0.1) for f in deferred))
    assert not pending, "records still deferred"
    return delivered, failed


# -- the sink end to end -----------------------------------------------------------------------


async def test_250_companies_and_400_contacts_with_associations(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    sandbox.set_limits(portal, PortalLimits(search_per_second=25))
    identity = FakeIdentity()
    companies = [company(f"co_{i}", employee_count=i, industry="Software") for i in range(250)]
    people = [person(f"p_{i}", company_id=f"co_{i % 250}", title="CTO") for i in range(400)]
    async with open_sink(sandbox, identity=identity, search_rate_per_second=25) as sink:
        delivered, failed = await deliver_all(sink, [*companies, *people])
        assert failed == {}
        assert len(delivered) == 650

        stored = {c["properties"]["queast_id"]: c for c in sandbox.objects(portal, "companies")}
        contacts = {c["properties"]["queast_id"]: c for c in sandbox.objects(portal, "contacts")}
        assert len(stored) == 250
        assert len(contacts) == 400
        assert stored["co_7"]["properties"]["domain"] == "co-7.example"
        assert stored["co_7"]["properties"]["numberofemployees"] == "7"
        assert stored["co_7"]["properties"]["queast_industry"] == "Software"
        assert contacts["p_3"]["properties"]["jobtitle"] == "CTO"
        for i in range(400):
            contact_id = contacts[f"p_{i}"]["id"]
            company_id = stored[f"co_{i % 250}"]["id"]
            assert sandbox.associations(portal, "contacts", contact_id, "companies") == [
                (company_id, 279)
            ]
            assert delivered[people[i].delivery_id].partner_object_id == contact_id
        assert len(identity.created) == 650

        # a second pass finds every link: updates by id only, nothing new
        before = sandbox.stats(portal)
        again, failed_again = await deliver_all(sink, [*companies, *people])
    assert failed_again == {}
    assert len(again) == 650
    assert len(sandbox.objects(portal, "companies")) == 250
    assert len(sandbox.objects(portal, "contacts")) == 400
    stats = sandbox.stats(portal)
    routes = {k: v - before.by_route.get(k, 0) for k, v in stats.by_route.items()}
    assert routes["POST /crm/v3/objects/companies/batch/update"] == 3
    # chunks of 100 records: the third holds 50 companies and 50 people
    assert routes["POST /crm/v3/objects/contacts/batch/update"] == 5
    assert routes.get("POST /crm/v3/objects/companies/search", 0) == 0
    assert stats.throttled == 0


async def test_first_links_are_looked_up_with_few_packed_searches_and_no_429(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    seeded = {
        i: sandbox.seed(portal, "companies", {"domain": f"co-{i}.example", "name": f"Old {i}"})
        for i in range(0, 300, 10)
    }
    identity = FakeIdentity()
    records = [company(f"co_{i}") for i in range(300)]
    async with open_sink(sandbox, identity=identity) as sink:
        delivered, failed = await deliver_all(sink, records)
    assert (len(delivered), failed) == (300, {})
    for i, object_id in seeded.items():
        assert delivered[records[i].delivery_id].partner_object_id == object_id
    assert len(sandbox.objects(portal, "companies")) == 300
    searches = [e for e in sandbox.requests(portal) if e.path.endswith("/search")]
    assert all(e.status == 200 for e in searches)
    # per chunk of 100: ids and domains in one request, then the names of the 90 not found
    assert len(searches) == 6
    assert sum(e.search_values for e in searches) == 300 * 2 + 270
    assert sandbox.stats(portal).throttled == 0


async def test_the_sink_keeps_inside_a_small_window_and_never_gets_a_429(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    sandbox.set_limits(portal, PortalLimits(burst_max=5, interval_ms=1000))
    identity = FakeIdentity()
    for i in range(20):
        identity.links[(C, f"co_{i}")] = sandbox.seed(portal, "companies", {"name": f"n{i}"})
    async with open_sink(sandbox, identity=identity) as sink:
        for i in range(20):  # one request each
            _, failed = await deliver_all(sink, [company(f"co_{i}")])
            assert failed == {}
    stats = sandbox.stats(portal)
    # all 20 admitted and a full window reached: the sink waited for the window to roll
    # (which takes at least 3 s of the sandbox's own time) instead of being refused
    assert stats.by_status == {200: 20}
    assert stats.max_burst_in_window == 5


async def test_seeded_partner_objects_are_linked_or_held_for_review(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    owned = sandbox.seed(
        portal, "companies", {"name": "Acme (partner)", "domain": "acme.example", "phone": "+49 1"}
    )
    twin_a = sandbox.seed(portal, "companies", {"name": "Twin A", "domain": "twin.example"})
    twin_b = sandbox.seed(portal, "companies", {"name": "Twin B", "domain": "twin.example"})
    identity = FakeIdentity()
    acme = company("co_acme", domain="acme.example", name=None, website=None)
    twin = company("co_twin", domain="twin.example")
    async with open_sink(sandbox, identity=identity) as sink:
        delivered, failed = await deliver_all(sink, [acme, twin])

    assert delivered[acme.delivery_id].partner_object_id == owned
    linked = sandbox.state.get(portal, "companies", owned)
    assert linked is not None
    assert linked["properties"]["queast_id"] == "co_acme"
    assert linked["properties"]["name"] == "Acme (partner)"  # never blanked
    assert linked["properties"]["phone"] == "+49 1"
    assert isinstance(failed[twin.delivery_id], HeldForReviewError)
    for twin_id in (twin_a, twin_b):
        untouched = sandbox.state.get(portal, "companies", twin_id)
        assert untouched is not None
        assert "queast_id" not in untouched["properties"]
    assert len(sandbox.objects(portal, "companies")) == 3


async def test_notes_and_deletions(sandbox: HubSpotSandbox, portal: int) -> None:
    identity = FakeIdentity()
    async with open_sink(sandbox, identity=identity, note_id_property="queast_note_id") as sink:
        await deliver_all(sink, [company("co_1"), person("p_1", company_id="co_1")])
        note = signal("s_1", "co_1", person_ids=["p_1"], contract_mode="legacy")
        first, _ = await deliver_all(sink, [note])
        again, _ = await deliver_all(sink, [note])  # a retried note is not duplicated
        gone, _ = await deliver_all(sink, [deleted(C, "co_1"), deleted(P, "p_unknown")])

    notes = sandbox.objects(portal, "notes")
    assert len(notes) == 1
    note_id = notes[0]["id"]
    assert first[note.delivery_id].partner_object_id == note_id
    assert again[note.delivery_id].partner_object_id == note_id
    assert "Contract mode: legacy" in notes[0]["properties"]["hs_note_body"]
    company_id = identity.links[(C, "co_1")]
    contact_id = identity.links[(P, "p_1")]
    assert sandbox.associations(portal, "notes", note_id, "companies") == [(company_id, 190)]
    assert sandbox.associations(portal, "notes", note_id, "contacts") == [(contact_id, 202)]
    assert sandbox.objects(portal, "companies") == []  # archived
    assert len(sandbox.objects(portal, "companies", include_archived=True)) == 1
    assert len(gone) == 2


async def test_scripted_failures_become_outcomes(sandbox: HubSpotSandbox, portal: int) -> None:
    identity = FakeIdentity()
    identity.links[(C, "co_1")] = sandbox.seed(portal, "companies", {"name": "x"})
    async with open_sink(sandbox, identity=identity) as sink:
        sandbox.fail_next(portal, 1, 423)
        locked = await sink.deliver([company("co_1")])
        sandbox.fail_next(portal, 1, 500)
        broken = await sink.deliver([company("co_1")])
        fine = await sink.deliver([company("co_1")])
    error = locked.failed[0].error
    assert type(error) is TransientError
    assert error.retry_after is not None
    assert error.retry_after >= 2
    assert type(broken.failed[0].error) is TransientError
    assert len(fine.delivered) == 1


# -- OAuth ------------------------------------------------------------------------------------


def _oauth(sandbox: HubSpotSandbox, portal: int, *, expires_in: int) -> dict[str, Any]:
    sandbox.add_oauth_app("client-1", "client-secret", expires_in=expires_in)
    sandbox.add_refresh_token(portal, "client-1", "refresh-1")
    return {
        "type": "oauth",
        "client_id": "client-1",
        "client_secret": "client-secret",
        "refresh_token": "refresh-1",
    }


async def test_an_expired_token_is_refreshed_once_and_the_call_retried(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    auth = _oauth(sandbox, portal, expires_in=1800)
    grants = MemoryGrantStore()
    identity = FakeIdentity()
    identity.links[(C, "co_1")] = sandbox.seed(portal, "companies", {"name": "x"})
    async with open_sink(sandbox, identity=identity, auth=auth, grants=grants) as sink:
        assert len((await sink.deliver([company("co_1")])).delivered) == 1
        assert sandbox.expire_tokens(portal) == 1
        assert len((await sink.deliver([company("co_1")])).delivered) == 1
    statuses = [entry.status for entry in sandbox.requests(portal)]
    assert statuses == [200, 401, 200]
    assert sandbox.stats(portal).token_requests == 2
    assert len(grants.saved) == 2


async def test_a_token_about_to_expire_is_refreshed_before_the_call(
    sandbox: HubSpotSandbox, portal: int, clock: SteeredClock
) -> None:
    # renewed 60 s before expiry, or at half-life for a token that lives less than 120 s;
    # the sink and the sandbox share one frozen clock, so 1.1 s pass exactly for both
    clock.freeze()
    auth = _oauth(sandbox, portal, expires_in=2)
    identity = FakeIdentity()
    identity.links[(C, "co_1")] = sandbox.seed(portal, "companies", {"name": "x"})
    async with open_sink(sandbox, identity=identity, auth=auth, clock=clock) as sink:
        await sink.deliver([company("co_1")])
        clock.advance(1.1)
        await sink.deliver([company("co_1")])
    assert [entry.status for entry in sandbox.requests(portal)] == [200, 200]
    assert sandbox.stats(portal).token_requests == 2


async def test_a_revoked_refresh_token_is_an_authentication_error(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    auth = {**_oauth(sandbox, portal, expires_in=1800), "refresh_token": "revoked"}
    identity = FakeIdentity({(C, "co_1"): "1"})
    async with open_sink(sandbox, identity=identity, auth=auth) as sink:
        outcome = await sink.deliver([company("co_1")])
    assert isinstance(outcome.failed[0].error, AuthenticationError)
    assert sandbox.requests(portal) == []


def test_token_endpoint_shapes(sandbox: HubSpotSandbox, portal: int, clock: SteeredClock) -> None:
    clock.freeze()
    _oauth(sandbox, portal, expires_in=1)
    form = {
        "grant_type": "refresh_token",
        "client_id": "client-1",
        "client_secret": "client-secret",
        "refresh_token": "refresh-1",
    }
    granted = httpx.post(f"{sandbox.url}/oauth/v1/token", data=form)
    assert granted.status_code == 200
    body = granted.json()
    assert set(body) == {"token_type", "refresh_token", "access_token", "expires_in"}
    assert body["expires_in"] == 1
    bad = httpx.post(f"{sandbox.url}/oauth/v1/token", data={**form, "refresh_token": "nope"})
    assert (bad.status_code, bad.json()["status"]) == (400, "BAD_REFRESH_TOKEN")

    url = f"{sandbox.url}/crm/v3/objects/companies/batch/read"
    ok = httpx.post(url, json={"inputs": []}, headers=_headers(body["access_token"]))
    assert ok.status_code == 200
    assert "x-hubspot-ratelimit-daily" not in ok.headers  # OAuth calls omit daily headers
    clock.advance(1.05)
    expired = httpx.post(url, json={"inputs": []}, headers=_headers(body["access_token"]))
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    unknown = httpx.post(url, json={"inputs": []}, headers=_headers("who"))
    assert unknown.json()["category"] == "INVALID_AUTHENTICATION"


# -- the API's shapes and limits ---------------------------------------------------------------


def test_the_ten_second_window_answers_429_with_hubspots_body_and_headers(
    sandbox: HubSpotSandbox, portal: int, clock: SteeredClock
) -> None:
    clock.freeze()
    sandbox.set_limits(portal, PortalLimits(burst_max=3))
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/read"
    answers = [httpx.post(url, json={"inputs": []}, headers=_headers()) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-hubspot-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    limited = answers[3]
    assert limited.headers["x-hubspot-ratelimit-max"] == "3"
    assert limited.headers["x-hubspot-ratelimit-interval-milliseconds"] == "10000"
    assert limited.headers["x-hubspot-ratelimit-daily"] == "250000"
    body = limited.json()
    assert {k: body[k] for k in ("status", "message", "errorType", "policyName")} == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    assert body["correlationId"]
    stats = sandbox.stats(portal)
    assert stats.rate_limited == {"TEN_SECONDLY_ROLLING": 1}


def test_the_window_rolls(sandbox: HubSpotSandbox, portal: int, clock: SteeredClock) -> None:
    clock.freeze()
    sandbox.set_limits(portal, PortalLimits(burst_max=2, interval_ms=400))
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/read"

    def status() -> int:
        return httpx.post(url, json={"inputs": []}, headers=_headers()).status_code

    assert [status(), status(), status()] == [200, 200, 429]
    clock.advance(0.45)
    assert [status(), status(), status()] == [200, 200, 429]


def test_search_limit_and_headers(
    sandbox: HubSpotSandbox, portal: int, clock: SteeredClock
) -> None:
    clock.freeze()
    url = f"{sandbox.url}/crm/v3/objects/contacts/search"
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "a@b.c"}]}
        ]
    }
    answers = [httpx.post(url, json=body, headers=_headers()) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert all(not k.startswith("x-hubspot-ratelimit") for a in answers for k in a.headers)
    assert answers[5].json()["policyName"] == "SECONDLY"


def test_the_daily_limit(sandbox: HubSpotSandbox, portal: int) -> None:
    sandbox.set_limits(portal, PortalLimits(daily=2))
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/read"
    answers = [httpx.post(url, json={"inputs": []}, headers=_headers()) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-hubspot-ratelimit-daily-remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].json()["policyName"] == "DAILY"
    assert answers[2].json()["message"] == "You have reached your daily limit."


def test_batch_writes_answer_207_per_input(sandbox: HubSpotSandbox, portal: int) -> None:
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/upsert"
    body = {
        "inputs": [
            {
                "id": "co_1",
                "idProperty": "queast_id",
                "objectWriteTraceId": "t1",
                "properties": {"name": "A"},
            },
            {
                "id": "co_2",
                "idProperty": "queast_id",
                "objectWriteTraceId": "t2",
                "properties": {"nope": "x"},
            },
        ]
    }
    answer = httpx.post(url, json=body, headers=_headers())
    assert answer.status_code == 207
    data = answer.json()
    assert data["status"] == "COMPLETE"
    assert data["numErrors"] == 1
    assert [(r["objectWriteTraceId"], r["new"]) for r in data["results"]] == [("t1", True)]
    error = data["errors"][0]
    assert error["category"] == "VALIDATION_ERROR"
    assert error["context"]["objectWriteTraceId"] == ["t2"]
    assert error["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    again = httpx.post(url, json={"inputs": body["inputs"][:1]}, headers=_headers())
    assert (again.status_code, again.json()["results"][0]["new"]) == (200, False)


def test_contacts_are_unique_by_email(sandbox: HubSpotSandbox, portal: int) -> None:
    existing = sandbox.seed(portal, "contacts", {"email": "ada@example.com"})
    url = f"{sandbox.url}/crm/v3/objects/contacts/batch/upsert"
    item = {
        "id": "p_1",
        "idProperty": "queast_id",
        "objectWriteTraceId": "t1",
        "properties": {"email": "ADA@example.com"},
    }
    answer = httpx.post(url, json={"inputs": [item]}, headers=_headers())
    assert answer.status_code == 207
    error = answer.json()["errors"][0]
    assert error["category"] == "CONFLICT"
    assert existing in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {
            "inputs": [
                {"id": f"c{i}", "idProperty": "queast_id", "properties": {}} for i in range(101)
            ]
        },
        {"inputs": [{"idProperty": "queast_id", "properties": {}}]},
        {"records": []},
    ],
)
def test_bad_batches_are_400_and_write_nothing(
    sandbox: HubSpotSandbox, portal: int, body: dict[str, Any]
) -> None:
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/upsert"
    answer = httpx.post(url, json=body, headers=_headers())
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert sandbox.objects(portal, "companies") == []


def _search(
    sandbox: HubSpotSandbox, body: dict[str, Any], object_type: str = "companies"
) -> httpx.Response:
    url = f"{sandbox.url}/crm/v3/objects/{object_type}/search"
    return httpx.post(url, json=body, headers=_headers())


def _in(name: str, *values: str) -> dict[str, Any]:
    return {"filters": [{"propertyName": name, "operator": "IN", "values": list(values)}]}


def _names(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [r["properties"]["name"] for r in answer.json()["results"]]


def test_search_in_matches_lower_case_values_across_groups(
    sandbox: HubSpotSandbox, portal: int
) -> None:
    sandbox.seed(portal, "companies", {"domain": "A.example", "name": "A"})
    sandbox.seed(portal, "companies", {"domain": "b.example", "name": "B"})
    sandbox.seed(portal, "companies", {"name": "C", "queast_id": "co_c"})
    sandbox.seed(portal, "companies", {"domain": "d.example", "name": "D"})
    found = _search(
        sandbox,
        {
            "filterGroups": [
                _in("domain", "a.example", "b.example", "zz.example"),
                _in("queast_id", "co_c"),
            ],
            "properties": ["name"],
        },
    )
    assert _names(found) == ["A", "B", "C"]
    # HubSpot: IN values of a string property must be lower case
    assert _names(_search(sandbox, {"filterGroups": [_in("domain", "B.EXAMPLE")]})) == []
    not_in = {
        "filters": [{"propertyName": "domain", "operator": "NOT_IN", "values": ["a.example"]}]
    }
    assert _names(_search(sandbox, {"filterGroups": [not_in], "properties": ["name"]})) == [
        "B",
        "C",
        "D",
    ]
    both = {
        "filters": [
            *_in("domain", "b.example", "d.example")["filters"],
            *_in("name", "d")["filters"],
        ]
    }
    assert _names(_search(sandbox, {"filterGroups": [both], "properties": ["name"]})) == ["D"]
    stats = [e.search_values for e in sandbox.requests(portal)]
    assert stats == [4, 1, 1, 3]


def test_search_pages_with_after(sandbox: HubSpotSandbox, portal: int) -> None:
    for i in range(5):
        sandbox.seed(portal, "companies", {"domain": "same.example", "name": f"n{i}"})
    body = {"filterGroups": [_in("domain", "same.example")], "properties": ["name"], "limit": 2}
    first = _search(sandbox, body).json()
    assert first["total"] == 5
    assert [r["properties"]["name"] for r in first["results"]] == ["n0", "n1"]
    after = first["paging"]["next"]["after"]
    last = _search(sandbox, {**body, "after": "4"}).json()
    assert [r["properties"]["name"] for r in last["results"]] == ["n4"]
    assert "paging" not in last
    middle = _search(sandbox, {**body, "after": after}).json()
    assert [r["properties"]["name"] for r in middle["results"]] == ["n2", "n3"]


def _assert_400(answer: httpx.Response, message: str) -> None:
    assert answer.status_code == 400
    body = answer.json()
    assert (body["status"], body["category"]) == ("error", "VALIDATION_ERROR")
    assert body["correlationId"]
    assert message in body["message"]


def test_search_bodies_over_3000_characters_are_400(sandbox: HubSpotSandbox, portal: int) -> None:
    def body_of(chars: int) -> bytes:
        base = {"filterGroups": [_in("domain", "")], "limit": 10}
        pad = chars - len(json.dumps(base, separators=(",", ":")))
        return json.dumps(
            {"filterGroups": [_in("domain", "x" * pad)], "limit": 10}, separators=(",", ":")
        ).encode()

    url = f"{sandbox.url}/crm/v3/objects/companies/search"
    headers = {**_headers(), "content-type": "application/json"}
    assert len(body_of(3000)) == 3000
    assert httpx.post(url, content=body_of(3000), headers=headers).status_code == 200
    _assert_400(httpx.post(url, content=body_of(3001), headers=headers), "3000 characters")
    # characters, not bytes: 1,500 two-byte characters are within the limit
    wide = body_of(1600).replace(b"x" * 1500, "é".encode() * 1500)
    assert len(wide.decode()) <= 3000 < len(wide)
    assert httpx.post(url, content=wide, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([_in("domain", "a")] * 6, "Too many filters"),
        ([{"filters": _in("domain", "a")["filters"] * 7}], "Too many filters"),
        ([{"filters": _in("domain", "a")["filters"] * 5}] * 4, "Too many filters"),
        ([{"filters": [{"propertyName": "domain", "operator": "IN"}]}], "IN and NOT_IN"),
        ([{"filters": [{"propertyName": "domain", "operator": "IN", "values": []}]}], "IN"),
        ([{"filters": [{"propertyName": "domain", "operator": "EQ"}]}], "a 'value'"),
        ([_in("nope", "a")], "Unknown filter property"),
    ],
)
def test_search_limits_are_400(
    sandbox: HubSpotSandbox, portal: int, groups: list[dict[str, Any]], message: str
) -> None:
    _assert_400(_search(sandbox, {"filterGroups": groups}), message)


def test_search_at_the_limits_is_answered(sandbox: HubSpotSandbox, portal: int) -> None:
    five_by_three = [{"filters": _in("domain", "a")["filters"] * 3}] * 5  # 15 filters
    assert _search(sandbox, {"filterGroups": five_by_three}).status_code == 200
    three_by_six = [{"filters": _in("domain", "a")["filters"] * 6}] * 3  # 18 filters
    assert _search(sandbox, {"filterGroups": three_by_six}).status_code == 200


def test_search_validation(sandbox: HubSpotSandbox, portal: int) -> None:
    url = f"{sandbox.url}/crm/v3/objects/companies/search"
    group = {"filters": [{"propertyName": "domain", "operator": "EQ", "value": "a.example"}]}
    too_many = httpx.post(url, json={"filterGroups": [group] * 6}, headers=_headers())
    assert too_many.status_code == 400
    sandbox.seed(portal, "companies", {"domain": "A.example", "name": "A"})
    found = httpx.post(
        url, json={"filterGroups": [group], "properties": ["name"]}, headers=_headers()
    )
    results = found.json()["results"]
    assert [r["properties"]["name"] for r in results] == ["A"]


def test_the_control_api(sandbox: HubSpotSandbox, clock: SteeredClock) -> None:
    clock.freeze()
    sandbox.state.reset()
    control = f"{sandbox.url}/_control"
    created = httpx.post(f"{control}/portals", json={"portal_id": 7, "private_app_token": "t7"})
    assert created.json() == {"portal_id": 7}
    seeded = httpx.post(
        f"{control}/portals/7/objects/companies", json={"properties": {"name": "S"}}
    )
    assert seeded.status_code == 201
    assert httpx.put(f"{control}/portals/7/limits", json={"burst_max": 1}).status_code == 200
    assert (
        httpx.post(f"{control}/portals/7/fail", json={"count": 1, "status": 503}).status_code == 204
    )
    url = f"{sandbox.url}/crm/v3/objects/companies/batch/read"
    statuses = [
        httpx.post(url, json={"inputs": []}, headers=_headers("t7")).status_code for _ in range(2)
    ]
    assert statuses == [503, 429]
    stats = httpx.get(f"{control}/portals/7/stats").json()
    assert stats["requests"] == 2
    assert stats["rate_limited"] == {"TEN_SECONDLY_ROLLING": 1}
    objects = httpx.get(f"{control}/portals/7/objects/companies").json()["results"]
    assert [o["properties"]["name"] for o in objects] == ["S"]
    assert httpx.delete(control).status_code == 204
    assert httpx.get(f"{control}/portals/7/stats").status_code == 404
