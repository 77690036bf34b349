"""PipedriveSink against the local Pipedrive sandbox, served for real on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from connectors.base import (
    BackpressureError,
    BatchOutcome,
    EntityKind,
    OutboundRecord,
    QuotaExhaustedError,
    RateLimit,
    SystemClock,
    http_client_factory,
)
from connectors.pipedrive import PipedriveSink
from tests.sandboxes.pipedrive import (
    AccountInfo,
    AccountLimits,
    AccountSpec,
    OAuthClientSpec,
    PipedriveSandbox,
)
from tests.unit.connectors.fakes import MemoryGrantStore
from tests.unit.connectors.pipedrive.fakes import (
    API_TOKEN,
    SEARCH_PATH,
    FakeIdentity,
    company_record,
    open_sink,
    person_record,
    signal_record,
)

FAST = AccountLimits(api_token_burst=10_000, oauth_burst=10_000, search_per_window=10_000)


@pytest.fixture(scope="module")
def server() -> Iterator[PipedriveSandbox]:
    with PipedriveSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(server: PipedriveSandbox) -> Iterator[PipedriveSandbox]:
    server.reset()
    yield server
    server.reset()


def _account(sandbox: PipedriveSandbox, limits: AccountLimits = FAST) -> AccountInfo:
    return sandbox.add_account(
        AccountSpec(
            name="acme",
            api_tokens=[API_TOKEN],
            oauth_clients=[
                OAuthClientSpec(client_id="cid", client_secret="csecret", refresh_token="rt-1")
            ],
            limits=limits,
        )
    )


def _settings(sandbox: PipedriveSandbox, info: AccountInfo, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "auth": {"type": "api_token", "token": API_TOKEN},
        "base_url": sandbox.url,
        "domain_field_key": info.domain_field_key,
        "queast_id_field_key": info.queast_id_field_key,
        "candidate_index": SEARCH_PATH,  # these tests count searches; see test_index.py
    }
    settings.update(overrides)
    return settings


class ShiftedClock(SystemClock):
    """The real clock, with wall time moved forward on demand (to reach midnight)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    def shift(self, seconds: float) -> None:
        self.offset += seconds


@asynccontextmanager
async def _sink(
    sandbox: PipedriveSandbox,
    info: AccountInfo,
    identity: FakeIdentity,
    *,
    fast: bool = True,
    clock: SystemClock | None = None,
    grants: MemoryGrantStore | None = None,
    **overrides: Any,
) -> AsyncIterator[PipedriveSink]:
    if fast:
        overrides.setdefault("rate_limit_per_second", 1000)
    options: dict[str, Any] = {}
    if fast:
        options["search_rate_limit"] = RateLimit(rate=5000, per_seconds=1)
    async with open_sink(
        http_client_factory,
        identity=identity,
        clock=clock or SystemClock(),
        settings=_settings(sandbox, info, **overrides),
        allow_private_networks=True,
        grants=grants,
        **options,
    ) as sink:
        yield sink


async def _deliver_each(sink: PipedriveSink, records: list[OutboundRecord]) -> list[BatchOutcome]:
    """Deliver every record in its own call, concurrently (as the delivery lanes do)."""
    return await asyncio.gather(*(sink.deliver([record]) for record in records))


def _companies(count: int) -> list[OutboundRecord]:
    return [
        company_record(f"co_{i}", name=f"Company {i}", domain=f"c{i}.example", domains=[])
        for i in range(count)
    ]


def _persons(count: int, companies: int) -> list[OutboundRecord]:
    return [
        person_record(
            f"pe_{i}",
            company_id=f"co_{i % companies}",
            full_name=f"Person {i}",
            email=f"p{i}@c{i % companies}.example",
            emails=[f"p{i}@c{i % companies}.example"],
        )
        for i in range(count)
    ]


async def test_100_organizations_and_200_persons_end_to_end(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox)
    identity = FakeIdentity()
    async with _sink(sandbox, info, identity, max_concurrency=16) as sink:
        companies = await _deliver_each(sink, _companies(100))
        assert [o.failed for o in companies] == [()] * 100
        persons = await _deliver_each(sink, _persons(200, 100))
        assert [o.failed for o in persons] == [()] * 200
        renamed = [
            company_record(f"co_{i}", name=f"Renamed {i}", domain=f"c{i}.example")
            for i in range(10)
        ]
        updates = await sink.deliver(renamed)
        assert updates.failed == ()
        note = await sink.deliver([signal_record("co_3")])
        assert note.failed == ()
        spent_locally = sink.client.budget.spent

    orgs = sandbox.organizations("acme")
    assert len(orgs) == 100
    by_queast = {o["custom_fields"][info.queast_id_field_key]: o for o in orgs}
    assert by_queast["co_7"]["custom_fields"][info.domain_field_key] == "c7.example"
    assert by_queast["co_7"]["name"] == "Renamed 7"
    assert by_queast["co_50"]["name"] == "Company 50"
    assert identity.links[(EntityKind.COMPANY, "co_7")] == str(by_queast["co_7"]["id"])

    people = sandbox.persons("acme")
    assert len(people) == 200
    by_person = {p["custom_fields"][info.queast_id_field_key]: p for p in people}
    assert by_person["pe_107"]["org_id"] == by_queast["co_7"]["id"]
    assert by_person["pe_107"]["emails"] == [
        {"value": "p107@c7.example", "primary": True, "label": "work"}
    ]
    assert len(identity.linked_by_connector) == 300

    (stored_note,) = sandbox.notes("acme")
    assert stored_note["org_id"] == by_queast["co_3"]["id"]
    assert "Hiring surge" in stored_note["content"]

    stats = sandbox.stats()
    assert stats.throttled == 0
    assert stats.by_status == {200: 100 * 2 + 200 * 2 + 10, 201: 1}
    # 300 searches (20) + 300 creates (5) + 10 updates (5) + 1 note (10)
    assert stats.tokens_spent["acme"] == 300 * 25 + 10 * 5 + 10
    assert spent_locally == stats.tokens_spent["acme"]


async def test_existing_organizations_are_found_by_their_domain_field(
    sandbox: PipedriveSandbox,
) -> None:
    info = _account(sandbox)
    existing = sandbox.seed_organization("acme", name="Acme (by hand)", domain="c1.example")
    identity = FakeIdentity()
    async with _sink(sandbox, info, identity) as sink:
        outcome = await sink.deliver(_companies(2))
    assert outcome.failed == ()
    assert outcome.delivered[1].partner_object_id == str(existing["id"])
    orgs = {o["id"]: o for o in sandbox.organizations("acme")}
    assert len(orgs) == 2
    assert orgs[existing["id"]]["name"] == "Company 1"
    assert orgs[existing["id"]]["custom_fields"][info.queast_id_field_key] == "co_1"


async def test_searches_keep_within_the_sandboxs_search_limit(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox, AccountLimits(api_token_burst=10_000))  # search: 10 per 2 s
    started = time.monotonic()
    async with _sink(sandbox, info, FakeIdentity(), fast=False) as sink:
        outcome = await sink.deliver(_companies(13))
    assert outcome.failed == ()
    assert sandbox.stats().throttled == 0
    assert time.monotonic() - started >= 12 * 0.2 - 0.1


async def test_the_lite_burst_limit_is_respected(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox, AccountLimits(search_per_window=10_000))  # burst: 20 per 2 s
    identity = FakeIdentity(links={(EntityKind.COMPANY, f"co_{i}"): str(i + 1) for i in range(25)})
    for i in range(25):
        sandbox.seed_organization("acme", name=f"Company {i}")
    async with _sink(sandbox, info, identity, fast=False) as sink:
        outcome = await sink.deliver(_companies(25))  # 25 PATCHes
    assert outcome.failed == ()
    assert sandbox.stats().throttled == 0


async def test_a_spent_budget_answers_429_and_the_sink_parks_until_reset(
    sandbox: PipedriveSandbox,
) -> None:
    # The sandbox's budget is the company's, shared with others: it runs out first.
    info = _account(sandbox, FAST.model_copy(update={"daily_budget": 60}))
    async with _sink(sandbox, info, FakeIdentity(), daily_budget=10_000) as sink:
        first = await sink.deliver(_companies(3))  # 25 tokens each
        assert len(first.delivered) == 2
        refused = first.failed[0].error
        assert isinstance(refused, QuotaExhaustedError)
        assert refused.status_code == 429
        assert 0 < refused.retry_after <= 86_400
        assert sandbox.stats().throttled_by_reason == {"budget": 1}

        again = await sink.deliver(_companies(3)[2:])  # refused locally: nothing sent
        assert isinstance(again.failed[0].error, QuotaExhaustedError)
        assert sandbox.stats().throttled == 1
    assert len(sandbox.organizations("acme")) == 2


async def test_the_local_budget_stops_before_pipedrive_does(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox)
    async with _sink(sandbox, info, FakeIdentity(), daily_budget=50) as sink:
        outcome = await sink.deliver(_companies(3))
    assert len(outcome.delivered) == 2
    assert isinstance(outcome.failed[0].error, QuotaExhaustedError)
    assert sandbox.stats().throttled == 0
    assert sandbox.stats().requests == 4


async def test_after_the_reset_deliveries_work_again(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox, AccountLimits(daily_budget=25))  # Pipedrive's search window
    records = _companies(2)
    clock = ShiftedClock()
    async with _sink(sandbox, info, FakeIdentity(), clock=clock, daily_budget=10_000) as sink:
        assert (await sink.deliver(records[:1])).failed == ()
        refused = (await sink.deliver(records[1:])).failed[0].error
        assert isinstance(refused, QuotaExhaustedError)
        # Midnight, for the sandbox and for the sink's clock alike.
        sandbox.reset_day()
        clock.shift(refused.retry_after)
        assert (await sink.deliver(records[1:])).failed == ()
    assert len(sandbox.organizations("acme")) == 2


async def test_a_burst_429_is_backpressure(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox, FAST.model_copy(update={"api_token_burst": 1}))
    sandbox.seed_organization("acme", name="Acme")
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_0"): "1"})
    async with _sink(sandbox, info, identity) as sink:  # our bucket allows 1000/s
        # Both leave before either answer tells the bucket about the window.
        outcomes = await _deliver_each(sink, [company_record("co_0") for _ in range(2)])
    failed = [f for o in outcomes for f in o.failed]
    assert sum(len(o.delivered) for o in outcomes) == 1
    (failure,) = failed
    assert isinstance(failure.error, BackpressureError)
    assert failure.error.status_code == 429
    assert 0 < failure.error.retry_after <= 2
    assert sandbox.stats().throttled_by_reason == {"burst": 1}


async def test_the_bucket_learns_the_window_from_the_headers(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox, FAST.model_copy(update={"api_token_burst": 2}))
    sandbox.seed_organization("acme", name="Acme")
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_0"): "1"})
    async with _sink(sandbox, info, identity) as sink:  # our bucket allows 1000/s
        outcome = await sink.deliver([company_record("co_0") for _ in range(3)])
        assert sink.client.burst.capacity == 2  # lowered by x-ratelimit-limit
    assert outcome.failed == ()
    # The second answer said "0 left, resets in ~2 s": the third waited instead of a 429.
    assert outcome.delivered[2].duration_ms >= 1_900
    assert sandbox.stats().throttled == 0


async def test_oauth_tokens_expire_and_are_refreshed(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox)
    grants = MemoryGrantStore()
    oauth = {
        "type": "oauth",
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "rt-1",
        "api_domain": sandbox.url,
        "token_url": sandbox.token_url,
    }
    identity = FakeIdentity()
    async with _sink(sandbox, info, identity, auth=oauth, base_url=None, grants=grants) as sink:
        first = await sink.deliver(_companies(2))
        assert first.failed == ()
        assert sandbox.stats().token_refreshes == 1
        sandbox.expire_tokens()  # revoked early: the next request gets a 401
        second = await sink.deliver([company_record("co_9", domain="c9.example")])
        assert second.failed == ()
    assert sandbox.stats().token_refreshes == 2
    assert sandbox.stats().by_status.get(401) == 1
    assert len(grants.saved) == 2
    assert grants.saved[0].api_domain == sandbox.url
    assert len(sandbox.organizations("acme")) == 3


async def test_people_written_before_their_company_get_its_organization_later(
    sandbox: PipedriveSandbox,
) -> None:
    info = _account(sandbox)
    identity = FakeIdentity()
    people, companies = _persons(4, 2), _companies(2)
    async with _sink(sandbox, info, identity) as sink:
        for outcome in await _deliver_each(sink, people):  # no company linked yet
            assert outcome.failed == ()
        assert {p["org_id"] for p in sandbox.persons("acme")} == {None}
        assert identity.waiting == {"co_0": {"pe_0", "pe_2"}, "co_1": {"pe_1", "pe_3"}}
        for outcome in await _deliver_each(sink, companies):
            assert outcome.failed == ()
        late = person_record(
            "pe_9", company_id="co_1", email="p9@c1.example", emails=["p9@c1.example"]
        )
        assert (await sink.deliver([late])).failed == ()  # company linked: set at once
    orgs = {
        o["custom_fields"][info.queast_id_field_key]: o["id"] for o in sandbox.organizations("acme")
    }
    persons = {p["custom_fields"][info.queast_id_field_key]: p for p in sandbox.persons("acme")}
    for person_id, company_id in (
        ("pe_0", "co_0"),
        ("pe_1", "co_1"),
        ("pe_2", "co_0"),
        ("pe_3", "co_1"),
        ("pe_9", "co_1"),
    ):
        assert persons[person_id]["org_id"] == orgs[company_id], person_id
    assert identity.waiting == {"co_0": set(), "co_1": set()}, "nobody waits any more"


async def test_a_company_linked_while_its_person_is_written_is_still_associated(
    sandbox: PipedriveSandbox,
) -> None:
    """The person registers as waiting, then finds the company linked: it sets org_id."""
    info = _account(sandbox)
    identity = FakeIdentity()
    async with _sink(sandbox, info, identity) as sink:
        real_wait = identity.wait_for_company

        async def company_lands_meanwhile(company_id: str, person_id: str) -> str | None:
            await sink.deliver(_companies(1))  # co_0 is linked between write and wait
            return await real_wait(company_id, person_id)

        identity.wait_for_company = company_lands_meanwhile  # type: ignore[method-assign]
        assert (await sink.deliver(_persons(1, 1))).failed == ()
    (org,) = sandbox.organizations("acme")
    (person,) = sandbox.persons("acme")
    assert person["org_id"] == org["id"]
    assert identity.waiting == {"co_0": set()}


async def test_the_sandbox_accepts_the_correlation_headers(sandbox: PipedriveSandbox) -> None:
    info = _account(sandbox)
    sent: list[httpx.Headers] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request.headers)

    def recording_factory(**options: Any) -> httpx.AsyncClient:
        client = http_client_factory(**options)
        client.event_hooks["request"].append(keep)
        return client

    identity = FakeIdentity()
    records = [
        company_record("co_1", domain="c1.example", domains=[]).model_copy(
            update={"correlation_id": "corr-org"}
        ),
        person_record("pe_1", company_id="co_1").model_copy(
            update={"correlation_id": "corr-person"}
        ),
        signal_record("co_1").model_copy(update={"correlation_id": "corr-note"}),
    ]
    async with open_sink(
        recording_factory,
        identity=identity,
        clock=SystemClock(),
        settings=_settings(sandbox, info, rate_limit_per_second=1000),
        allow_private_networks=True,
        search_rate_limit=RateLimit(rate=5000, per_seconds=1),
    ) as sink:
        outcomes = [await sink.deliver([record]) for record in records]
    assert [o.failed for o in outcomes] == [(), (), ()]
    assert {h.get("x-correlation-id") for h in sent} == {"corr-org", "corr-person", "corr-note"}
    assert all("x-request-id" in h for h in sent)
