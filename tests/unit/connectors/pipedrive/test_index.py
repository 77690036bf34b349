"""The candidate index: first links from listed objects instead of a search per entity.

Scripted with ``httpx.MockTransport`` where the exact requests matter, and against the
sandbox app in-process (``httpx.ASGITransport``, the same fake clock on both sides) where
the index must agree with the search path on the same data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from connectors.base import (
    EntityKind,
    HttpClientFactory,
    IdentityCandidate,
    IdentityOutcome,
    OutboundRecord,
    QuotaExhaustedError,
    http_client_factory,
)
from connectors.pipedrive import PipedriveConnectionConfig, PipedriveSink
from connectors.pipedrive.client import PipedriveObject
from connectors.pipedrive.index import IndexState, lookup_key
from processors.identity.matching import match_company, match_person
from processors.identity.strategies import (
    DEFAULT_COMPANY_STRATEGIES,
    DEFAULT_PERSON_STRATEGIES,
    CompanyIdentity,
    PartnerCandidate,
    PersonIdentity,
)
from tests.sandboxes.pipedrive import (
    AccountInfo,
    AccountLimits,
    AccountSpec,
    SandboxApp,
    SandboxState,
)
from tests.unit.connectors.fakes import FakeClock
from tests.unit.connectors.pipedrive.fakes import (
    API_TOKEN,
    DOMAIN_KEY,
    QUEAST_KEY,
    FakeIdentity,
    MockPipedrive,
    api_token_config,
    company_record,
    deletion_record,
    failure,
    ok,
    open_sink,
    person_record,
    search_result,
)

ORGS = "/api/v2/organizations"
PERSONS = "/api/v2/persons"
ORG_SEARCH = "/api/v2/organizations/search"
PERSON_SEARCH = "/api/v2/persons/search"
INDEX_ON: dict[str, Any] = {"enabled": True}
FAST = AccountLimits(api_token_burst=10_000, oauth_burst=10_000, search_per_window=10_000)


def _index_config(**index: Any) -> dict[str, Any]:
    return api_token_config(candidate_index={**INDEX_ON, **index})


def page(*objects: dict[str, Any], next_cursor: str | None = None) -> httpx.Response:
    """A v2 list page as Pipedrive answers it."""
    return httpx.Response(
        200,
        json={
            "success": True,
            "data": list(objects),
            "additional_data": {"next_cursor": next_cursor},
        },
        headers={"x-token-cost": "10"},
    )


def org(
    object_id: int,
    *,
    domain: str | None = None,
    name: str = "Acme",
    queast_id: str | None = None,
    updated: str = "2023-11-14T22:00:00Z",
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": object_id,
        "name": name,
        "website": None,
        "linkedin": None,
        "update_time": updated,
        "is_deleted": False,
        "custom_fields": {DOMAIN_KEY: domain, QUEAST_KEY: queast_id},
        **fields,
    }


def person(
    object_id: int, *emails: str, org_id: int | None = None, updated: str = "2023-11-14T22:00:00Z"
) -> dict[str, Any]:
    return {
        "id": object_id,
        "name": "Ada",
        "org_id": org_id,
        "update_time": updated,
        "is_deleted": False,
        "emails": [{"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)],
        "custom_fields": {QUEAST_KEY: None},
    }


def _lists(api: MockPipedrive, path: str = ORGS) -> list[httpx.Request]:
    return api.calls("GET", path)


def _candidate_ids(identity: FakeIdentity) -> list[list[str]]:
    return [[c.partner_object_id for c in candidates] for _, _, candidates in identity.decided]


# -- building ---------------------------------------------------------------------------------


async def test_the_first_lookup_pages_through_the_organizations() -> None:
    api = MockPipedrive()
    api.on(
        "GET",
        ORGS,
        page(org(1, domain="other.example"), org(2, domain="ACME.example "), next_cursor="c-2"),
        page(org(3, domain="acme.example", name="Acme Two")),
    )
    api.on("PATCH", f"{ORGS}/2", ok(org(2, domain="acme.example", queast_id="co_1")))
    identity = FakeIdentity(outcome=IdentityOutcome.LINKED)  # to the first candidate
    clock = FakeClock()
    async with open_sink(api, identity=identity, clock=clock, settings=_index_config()) as sink:
        outcome = await sink.deliver([company_record("co_1", domain="acme.example")])
        index = sink.candidate_index
        assert index is not None
        assert index.state(PipedriveObject.ORGANIZATION) is IndexState.READY
        assert index.state(PipedriveObject.PERSON) is IndexState.EMPTY  # built when asked
        assert index.size(PipedriveObject.ORGANIZATION) == 3
        spent = sink.client.budget.spent
    assert outcome.failed == ()
    first, second = _lists(api)
    assert dict(first.url.params) == {"limit": "500", "custom_fields": f"{DOMAIN_KEY},{QUEAST_KEY}"}
    assert dict(second.url.params) == {
        "limit": "500",
        "custom_fields": f"{DOMAIN_KEY},{QUEAST_KEY}",
        "cursor": "c-2",
    }
    assert api.calls("GET", ORG_SEARCH) == []
    assert api.calls("GET", rf"{ORGS}/\d+") == []  # no read per candidate either
    # the search path's candidates: the domain field matched exactly, case-insensitively
    assert _candidate_ids(identity) == [["2", "3"]]
    assert spent == 2 * 10 + 5  # two pages and the PATCH of the linked organization


async def test_persons_are_listed_with_their_emails_and_matched_case_insensitively() -> None:
    api = MockPipedrive()
    api.on("GET", PERSONS, page(person(7, "other@x.example", "ADA@acme.example", org_id=3)))
    api.on("GET", f"{PERSONS}/7", ok(person(7, "other@x.example", "ADA@acme.example")))
    api.on("PATCH", f"{PERSONS}/7", ok(person(7, "ada@acme.example")))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity, settings=_index_config()) as sink:
        outcome = await sink.deliver([person_record("pe_1", company_id=None)])
    assert outcome.failed == ()
    (listed,) = _lists(api, PERSONS)
    assert dict(listed.url.params) == {"limit": "500", "custom_fields": QUEAST_KEY}
    assert api.calls("GET", PERSON_SEARCH) == []
    ((_, _, candidates),) = identity.decided
    assert candidates == (
        IdentityCandidate(
            partner_object_id="7", name="Ada", emails=("other@x.example", "ADA@acme.example")
        ),
    )
    assert identity.links[(EntityKind.PERSON, "pe_1")] == "7"


async def test_concurrent_first_lookups_build_once() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page())
    api.on("POST", ORGS, lambda r: ok(org(len(api.calls("POST", ORGS)), domain=None)))
    async with open_sink(
        api, settings={**_index_config(), "max_concurrency": 8}, clock=FakeClock()
    ) as sink:
        records = [company_record(f"co_{i}", domain=f"c{i}.example") for i in range(8)]
        outcomes = [await sink.deliver([r]) for r in records[:1]]
        outcomes += await _gather(sink, records[1:])
    assert all(o.failed == () for o in outcomes)
    assert len(_lists(api)) == 1


async def _gather(sink: PipedriveSink, records: list[OutboundRecord]) -> list[Any]:
    """Every record in its own call, concurrently (as the delivery lanes do)."""
    return await asyncio.gather(*(sink.deliver([r]) for r in records))


# -- freshness --------------------------------------------------------------------------------


async def test_changes_are_fetched_after_the_refresh_interval_with_an_overlap() -> None:
    api = MockPipedrive()
    api.on(
        "GET",
        ORGS,
        page(org(1, domain="one.example"), org(2, domain="two.example")),
        # changes: 2 moved to another domain, 1 deleted, 5 made by someone in Pipedrive
        page(
            org(1, domain="one.example", is_deleted=True, updated="2023-11-14T22:14:00Z"),
            org(2, domain="moved.example", updated="2023-11-14T22:14:00Z"),
            org(5, domain="new.example", updated="2023-11-14T22:14:00Z"),
        ),
    )
    identity = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)  # nothing is written
    clock = FakeClock(wall=1_700_000_000.0)  # 2023-11-14T22:13:20Z
    async with open_sink(
        api, identity=identity, clock=clock, settings=_index_config(refresh_seconds=5)
    ) as sink:

        async def lookup(domain: str) -> None:
            await sink.deliver([company_record("co_x", domain=domain)])

        await lookup("two.example")  # builds
        clock.advance(4.9)
        await lookup("new.example")  # within the interval: no request, not seen yet
        assert len(_lists(api)) == 1
        clock.advance(0.1)
        await lookup("new.example")  # 5 s after the build started: the changes
        await lookup("moved.example")
        await lookup("two.example")
        await lookup("one.example")
    assert _candidate_ids(identity) == [["2"], [], ["5"], ["2"], [], []]
    build, changes = _lists(api)
    assert "updated_since" not in build.url.params
    # 10 s of overlap before the start of the previous fetch, to the second
    assert changes.url.params["updated_since"] == "2023-11-14T22:13:10Z"
    assert changes.url.params["limit"] == "500"


async def test_each_refresh_starts_where_the_previous_one_started() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page())
    clock = FakeClock(wall=1_700_000_000.0)
    async with open_sink(
        api,
        identity=FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS),
        clock=clock,
        settings=_index_config(refresh_seconds=5, refresh_overlap_seconds=2),
    ) as sink:
        for _ in range(3):
            await sink.deliver([company_record("co_x", domain="a.example")])
            clock.advance(60)
    since = [r.url.params.get("updated_since") for r in _lists(api)]
    assert since == [None, "2023-11-14T22:13:18Z", "2023-11-14T22:14:18Z"]


async def test_refresh_zero_fetches_changes_before_every_lookup() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page())
    async with open_sink(
        api,
        identity=FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS),
        settings=_index_config(refresh_seconds=0),
    ) as sink:
        for _ in range(3):
            await sink.deliver([company_record("co_x", domain="a.example")])
    assert len(_lists(api)) == 3
    assert api.calls("GET", ORG_SEARCH) == []


async def test_objects_the_sink_writes_are_found_at_once() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page())
    api.on("GET", PERSONS, page())
    api.on("POST", ORGS, ok(org(10, domain="acme.example", queast_id="co_1")))
    api.on("PATCH", f"{ORGS}/10", ok(org(10, domain="acme.example", queast_id="co_2")))
    api.on("POST", PERSONS, ok(person(20, "ada@acme.example", org_id=10)))
    api.on("DELETE", f"{ORGS}/10", ok({"id": 10}))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity, settings=_index_config()) as sink:
        assert (await sink.deliver([company_record("co_1")])).failed == ()  # created: 10
        assert (await sink.deliver([person_record("pe_1")])).failed == ()  # created: 20
        # another Queast company with the same domain: the new organization is a candidate
        assert (await sink.deliver([company_record("co_2")])).failed == ()
        identity.outcome = IdentityOutcome.AMBIGUOUS
        await sink.deliver([person_record("pe_2")])  # same email: finds person 20
        await sink.deliver([deletion_record("company", "co_1")])  # deletes 10
        await sink.deliver([company_record("co_3")])
    assert _candidate_ids(identity) == [[], [], ["10"], ["20"], []]
    assert len(_lists(api)) == 1
    assert len(_lists(api, PERSONS)) == 1
    assert identity.links[(EntityKind.COMPANY, "co_2")] == "10"


async def test_a_candidate_gone_from_pipedrive_is_dropped_when_the_write_finds_it_gone() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page(org(4, domain="acme.example")))
    api.on("PATCH", f"{ORGS}/4", failure(404))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity, settings=_index_config()) as sink:
        first = await sink.deliver([company_record("co_1")])
        index = sink.candidate_index
        assert index is not None
        assert index.size(PipedriveObject.ORGANIZATION) == 0
    (failed,) = first.failed
    assert "no longer exists" in str(failed.error)


async def test_writes_rekey_objects_and_older_versions_do_not_win() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page(*(org(i, domain="same.example") for i in (1, 2, 3))))
    async with open_sink(api, settings=_index_config()) as sink:
        index = sink.candidate_index
        assert index is not None
        kind = PipedriveObject.ORGANIZATION

        async def ids(domain: str) -> list[str]:
            found = await index.find(kind, domain, fields="custom_fields", limit=5)
            assert found is not None
            return [c.partner_object_id for c in found]

        assert await ids("same.example") == ["1", "2", "3"]
        index.forget(kind, 2)
        assert await ids("same.example") == ["1", "3"]
        index.observe(kind, org(1, domain="Moved.example", updated="2023-11-14T22:10:00Z"))
        assert await ids("same.example") == ["3"]
        assert await ids("moved.example") == ["1"]
        index.observe(kind, org(1, domain="same.example", updated="2023-11-14T22:05:00Z"))
        assert await ids("moved.example") == ["1"]  # an older version is ignored
        index.observe(kind, org(3, domain=None, name="Three"))
        assert await ids("same.example") == []
        found = await index.find(kind, " THREE", fields="name", limit=5)
        assert found is not None
        assert [c.partner_object_id for c in found] == ["3"]
        with pytest.raises(ValueError, match="looked up by"):
            await index.find(kind, "x@y.example", fields="email", limit=5)
    assert len(_lists(api)) == 1


async def test_writes_made_while_a_fetch_pages_are_not_undone_by_it() -> None:
    api = MockPipedrive()
    holder: list[PipedriveSink] = []
    kind = PipedriveObject.ORGANIZATION

    def build_page(request: httpx.Request) -> httpx.Response:
        index = holder[0].candidate_index
        assert index is not None
        # the sink created 9 while the page was on its way; the page does not have it yet
        index.observe(kind, org(9, domain="new.example", updated="2023-11-14T22:13:20Z"))
        return page(org(1, domain="one.example", updated="2023-11-14T22:13:20Z"))

    def changes_page(request: httpx.Request) -> httpx.Response:
        index = holder[0].candidate_index
        assert index is not None
        # the sink moved 1 to another domain in the same second the page was read
        index.observe(kind, org(1, domain="moved.example", updated="2023-11-14T22:13:30Z"))
        return page(org(1, domain="one.example", updated="2023-11-14T22:13:30Z"))

    api.on("GET", ORGS, build_page, changes_page)
    clock = FakeClock(wall=1_700_000_000.0)
    async with open_sink(api, clock=clock, settings=_index_config()) as sink:
        holder.append(sink)
        index = sink.candidate_index
        assert index is not None

        async def ids(domain: str) -> list[str]:
            found = await index.find(kind, domain, fields="custom_fields", limit=5)
            assert found is not None
            return [c.partner_object_id for c in found]

        assert await ids("new.example") == ["9"]
        clock.advance(10)
        assert await ids("moved.example") == ["1"]
        assert await ids("one.example") == []
    assert len(_lists(api)) == 2


# -- the search path as fallback ------------------------------------------------------------------


async def test_above_max_objects_the_kind_falls_back_to_search(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page(org(1), org(2), next_cursor="c"), page(org(3, domain="acme.example")))
    api.on("GET", ORG_SEARCH, ok(search_result(3)))
    api.on("GET", f"{ORGS}/3", ok(org(3, domain="acme.example")))
    api.on("PATCH", f"{ORGS}/3", ok(org(3, domain="acme.example")))
    identity = FakeIdentity()
    caplog.set_level(logging.INFO)
    async with open_sink(
        api, identity=identity, settings=_index_config(max_objects=2), clock=FakeClock()
    ) as sink:
        outcome = await sink.deliver([company_record("co_1"), company_record("co_2")])
        index = sink.candidate_index
        assert index is not None
        assert index.state(PipedriveObject.ORGANIZATION) is IndexState.DISABLED
        assert index.counters.fallbacks == 2
    assert outcome.failed == ()
    assert len(_lists(api)) == 2  # gave up at the page that went over, and not again
    assert len(api.calls("GET", ORG_SEARCH)) == 2
    assert _candidate_ids(identity) == [["3"], ["3"]]
    (disabled,) = [r for r in caplog.records if r.getMessage() == "pipedrive.index.disabled"]
    assert disabled.levelno == logging.WARNING
    fields = vars(disabled)
    assert (fields["kind"], fields["reason"]) == ("organizations", "too_large")
    assert (fields["objects"], fields["max_objects"]) == (3, 2)
    assert fields["retry_in_seconds"] == 86_400
    assert fields["tenant_id"] == "t_42"
    logged = " ".join(str(v) for v in fields.values())
    assert "acme" not in logged.lower()
    assert API_TOKEN not in logged


async def test_a_failed_build_falls_back_then_builds_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, failure(503), page(org(8, domain="acme.example")))
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("POST", ORGS, ok(org(9, domain="acme.example")))
    api.on("PATCH", f"{ORGS}/8", ok(org(8, domain="acme.example")))
    identity = FakeIdentity()
    clock = FakeClock()
    caplog.set_level(logging.INFO)
    async with open_sink(
        api,
        identity=identity,
        clock=clock,
        settings=_index_config(retry_after_failure_seconds=60),
    ) as sink:
        first = await sink.deliver([company_record("co_1")])  # 503 -> searched, created
        clock.advance(30)
        second = await sink.deliver([company_record("co_2")])  # still the search path
        clock.advance(30)
        third = await sink.deliver([company_record("co_3")])  # built again: finds 8
    assert [o.failed for o in (first, second, third)] == [(), (), ()]
    assert len(api.calls("GET", ORG_SEARCH)) == 2
    assert len(_lists(api)) == 2
    assert _candidate_ids(identity)[-1] == ["8"]
    (disabled,) = [r for r in caplog.records if r.getMessage() == "pipedrive.index.disabled"]
    assert vars(disabled)["reason"] == "build_failed"
    assert vars(disabled)["status_code"] == 503
    assert vars(disabled)["error_class"] == "TransientError"


async def test_a_failed_refresh_falls_back_for_that_lookup() -> None:
    api = MockPipedrive()
    api.on("GET", ORGS, page(), failure(500))
    api.on("GET", ORG_SEARCH, ok(search_result()))
    identity = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    clock = FakeClock()
    async with open_sink(api, identity=identity, clock=clock, settings=_index_config()) as sink:
        await sink.deliver([company_record("co_1")])
        clock.advance(10)
        await sink.deliver([company_record("co_2")])
        index = sink.candidate_index
        assert index is not None
        assert index.state(PipedriveObject.ORGANIZATION) is IndexState.DISABLED
    assert len(api.calls("GET", ORG_SEARCH)) == 1


async def test_a_spent_budget_during_the_build_is_the_connections_outcome() -> None:
    api = MockPipedrive()
    # 429 while the window has room: the company's daily budget is spent
    api.on("GET", ORGS, failure(429, headers={"x-ratelimit-remaining": "5"}))
    async with open_sink(api, settings=_index_config()) as sink:
        outcome = await sink.deliver([company_record("co_1")])
        index = sink.candidate_index
        assert index is not None
        assert index.state(PipedriveObject.ORGANIZATION) is IndexState.EMPTY
    (failed,) = outcome.failed
    assert isinstance(failed.error, QuotaExhaustedError)
    assert api.calls("GET", ORG_SEARCH) == []


async def test_a_short_rate_limit_on_a_page_is_waited_out() -> None:
    api = MockPipedrive()
    throttled = failure(429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.5"})
    api.on("GET", ORGS, page(org(1), next_cursor="c"), throttled, page(org(2)))
    identity = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    clock = FakeClock()
    async with open_sink(api, identity=identity, clock=clock, settings=_index_config()) as sink:
        await sink.deliver([company_record("co_1")])
        index = sink.candidate_index
        assert index is not None
        assert index.size(PipedriveObject.ORGANIZATION) == 2
    assert len(_lists(api)) == 3
    assert 1.5 in clock.slept


async def test_the_index_can_be_turned_off() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("POST", ORGS, ok(org(1)))
    async with open_sink(api, settings=api_token_config()) as sink:
        assert sink.candidate_index is None
        assert (await sink.deliver([company_record()])).failed == ()
    assert _lists(api) == []


def test_the_index_is_on_by_default() -> None:
    config = PipedriveConnectionConfig.validate_for_connection(
        {"auth": {"type": "api_token", "token": "t"}, "domain_field_key": "k"}
    )
    settings = config.candidate_index
    assert settings.enabled
    assert (settings.refresh_seconds, settings.max_objects) == (5.0, 50_000)


def test_lookup_keys_compare_as_pipedrives_exact_match() -> None:
    assert lookup_key("  Acme.Example ") == "acme.example"
    assert lookup_key("STRASSE") == lookup_key("straße")
    assert lookup_key("   ") is None
    assert lookup_key(None) is None
    assert lookup_key(42) is None


# -- the same answers as the search path, on the same data (the sandbox in-process) -------------


class _InProcess:
    """The sandbox app behind ``httpx.ASGITransport``, on the test's fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.state = SandboxState(clock=clock.time, monotonic=clock.monotonic)
        self.info: AccountInfo = self.state.add_account(
            AccountSpec(name="acme", api_tokens=[API_TOKEN], limits=FAST)
        )
        self.transport = httpx.ASGITransport(app=SandboxApp(self.state))

    def factory(self) -> HttpClientFactory:
        transport = self.transport

        def build(
            *,
            timeout_seconds: float = 15.0,
            connect_timeout_seconds: float = 5.0,
            max_connections: int = 10,
            headers: dict[str, str] | None = None,
        ) -> httpx.AsyncClient:
            return http_client_factory(
                timeout_seconds=timeout_seconds,
                connect_timeout_seconds=connect_timeout_seconds,
                max_connections=max_connections,
                headers=headers,
                transport=transport,
            )

        return build

    def settings(self, **index: Any) -> dict[str, Any]:
        return {
            "auth": {"type": "api_token", "token": API_TOKEN},
            "base_url": "http://pipedrive.sandbox",
            "domain_field_key": self.info.domain_field_key,
            "queast_id_field_key": self.info.queast_id_field_key,
            "rate_limit_per_second": 1000,
            "candidate_index": index,
        }

    @asynccontextmanager
    async def sink(self, identity: FakeIdentity, **index: Any) -> AsyncIterator[PipedriveSink]:
        async with open_sink(
            self.factory(),
            identity=identity,
            clock=self.clock,
            settings=self.settings(**index),
            allow_private_networks=True,
        ) as sink:
            yield sink

    def route_count(self, route: str) -> int:
        return self.state.stats().by_route.get(route, 0)


@pytest.fixture
def sandbox() -> _InProcess:
    return _InProcess(FakeClock(wall=1_700_000_000.0))


def _seed(sandbox: _InProcess) -> None:
    state = sandbox.state
    state.seed_organization("acme", name="Acme AB", domain="acme.example")
    state.seed_organization("acme", name="ACME ab", domain="  ACME.example ")
    state.seed_organization(
        "acme", name="Globex", domain="globex.example", website="https://www.globex.example/"
    )
    state.seed_organization("acme", name="Initech")
    state.seed_organization("acme", name=" initech ")
    state.seed_organization("acme", name="Initech Labs")
    state.seed_organization("acme", name="Hooli", domain="www.hooli.example")
    state.seed_organization("acme", name="Nestlé SA", domain="nestle.example", queast_id="co_n")
    gone = state.seed_organization("acme", name="Umbrella", domain="umbrella.example")
    state.handle_api(
        "delete",
        route="seed",
        collection="organizations",
        object_id=gone["id"],
        headers={"x-api-token": API_TOKEN},
        query={},
        body=None,
    )
    for i in range(7):
        state.seed_organization("acme", name=f"Many {i}", domain="many.example")
    state.seed_person("acme", name="Ada", emails=["ada@acme.example", "ada2@acme.example"])
    state.seed_person("acme", name="Ada Twin", emails=["Ada@Acme.example"], org_id=1)
    state.seed_person("acme", name="Bob", emails=["bob@globex.example"], queast_id="pe_b")


def _records() -> list[OutboundRecord]:
    companies = [
        company_record("co_1", name="Acme", domain="acme.example"),
        company_record("co_2", name="Globex", domain="https://www.Globex.example/path"),
        company_record("co_3", name="Hooli", domain="hooli.example", domains=[]),
        company_record("co_4", name="Many", domain="many.example"),
        company_record("co_5", name="Umbrella", domain="umbrella.example"),
        company_record("co_6", name="Initech", domain=None, domains=[]),
        company_record("co_7", name="initech labs", domain=None, domains=[]),
        company_record("co_8", name="Nobody", domain=None, domains=[]),
        company_record("co_n", name="Nestle", domain="NESTLE.example", domains=[]),
        company_record("co_9", name=None, domain=None, domains=[]),
    ]
    persons = [
        person_record("pe_1", email="ada@acme.example", emails=[]),
        person_record("pe_2", email=" ADA2@acme.example", emails=[]),
        person_record("pe_3", email="bob@globex.example", emails=["ada@acme.example"]),
        person_record("pe_4", email="nobody@else.example", emails=[]),
        person_record("pe_5", email=None, emails=[]),
    ]
    return companies + persons


def _decisions(identity: FakeIdentity, records: list[OutboundRecord]) -> list[tuple[str, Any]]:
    """What the identity layer's matcher makes of the candidates the sink offered."""
    payloads = {r.entity_id: r.payload for r in records}
    decided: list[tuple[str, Any]] = []
    for kind, queast_id, candidates in identity.decided:
        offered = [
            PartnerCandidate(
                partner_object_id=c.partner_object_id,
                name=c.name,
                domains=c.domains,
                emails=c.emails,
                linkedin_url=c.linkedin_url,
                queast_ids=c.queast_ids,
            )
            for c in candidates
        ]
        payload = payloads[queast_id]
        if kind is EntityKind.COMPANY:
            decision = match_company(
                CompanyIdentity(
                    company_id=queast_id,
                    name=payload.get("name"),
                    domain=payload.get("domain"),
                    domains=tuple(payload.get("domains") or ()),
                ),
                offered,
                strategies=DEFAULT_COMPANY_STRATEGIES,
            )
        else:
            decision = match_person(
                PersonIdentity(
                    person_id=queast_id,
                    full_name=payload.get("full_name"),
                    email=payload.get("email"),
                    emails=tuple(payload.get("emails") or ()),
                ),
                offered,
                strategies=DEFAULT_PERSON_STRATEGIES,
            )
        decided.append((queast_id, (decision.outcome, decision.partner_object_id)))
    return decided


async def test_lookups_find_what_the_search_path_finds(sandbox: _InProcess) -> None:
    _seed(sandbox)
    records = _records()
    # Held for review: nothing is written, so both paths see the same account.
    searched = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    async with sandbox.sink(searched, enabled=False) as sink:
        for record in records:
            await sink.deliver([record])
    searches = sandbox.route_count("GET /api/v2/organizations/search") + sandbox.route_count(
        "GET /api/v2/persons/search"
    )
    indexed = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    async with sandbox.sink(indexed) as sink:
        for record in records:
            await sink.deliver([record])
    after = sandbox.route_count("GET /api/v2/organizations/search") + sandbox.route_count(
        "GET /api/v2/persons/search"
    )

    assert searches == 13  # every entity with a domain, name or email
    assert after == searches  # the index path searched nothing
    assert sandbox.route_count("GET /api/v2/organizations") == 1
    assert sandbox.route_count("GET /api/v2/persons") == 1
    # the same candidates in the same order, then (index only) organizations with the name
    for (kind, queast_id, by_index), (_, _, by_search) in zip(
        indexed.decided, searched.decided, strict=True
    ):
        assert list(by_index[: len(by_search)]) == list(by_search), queast_id
        assert kind is EntityKind.COMPANY or len(by_index) == len(by_search)
    found = {queast_id: [c.partner_object_id for c in cs] for _, queast_id, cs in indexed.decided}
    assert found["co_1"] == ["1", "2"]  # trimmed, case-insensitive
    assert found["co_2"] == ["3"]
    # "www.hooli.example" is not "hooli.example" to the search; the index finds it by name
    assert found["co_3"] == ["7"]
    assert found["co_4"] == ["10", "11", "12", "13", "14"]  # the first five
    assert found["co_5"] == []  # deleted
    assert found["co_6"] == ["4", "5"]
    assert found["co_7"] == ["6"]
    assert found["pe_1"] == ["1", "2"]
    assert found["pe_2"] == ["1"]
    assert found["pe_3"] == ["3"]  # the first email only, as the search
    outcomes = dict(_decisions(indexed, records))
    searched_outcomes = dict(_decisions(searched, records))
    assert outcomes.pop("co_3")[1] == "7", "linked by its name, which search never looked at"
    assert searched_outcomes.pop("co_3")[1] is None
    assert outcomes == searched_outcomes
    assert outcomes["co_n"][1] == "8"  # the identity layer still decides


async def test_an_object_made_in_pipedrive_is_seen_after_the_refresh_interval(
    sandbox: _InProcess,
) -> None:
    identity = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    async with sandbox.sink(identity, refresh_seconds=5) as sink:
        await sink.deliver([company_record("co_1", domain="acme.example")])  # built: empty
        sandbox.clock.advance(1)
        sandbox.state.seed_organization("acme", name="Acme", domain="acme.example")
        sandbox.clock.advance(1)
        await sink.deliver([company_record("co_1", domain="acme.example")])  # missed
        sandbox.clock.advance(3)
        await sink.deliver([company_record("co_1", domain="acme.example")])  # changes: found
    assert _candidate_ids(identity) == [[], [], ["1"]]


async def test_a_large_account_is_read_500_at_a_time(sandbox: _InProcess) -> None:
    for i in range(1_201):
        sandbox.state.seed_organization("acme", name=f"Org {i}", domain=f"o{i}.example")
    identity = FakeIdentity(outcome=IdentityOutcome.AMBIGUOUS)
    spent_before = sandbox.state.spent("acme")
    async with sandbox.sink(identity) as sink:
        await sink.deliver([company_record("co_1", domain="o1200.example")])
        index = sink.candidate_index
        assert index is not None
        assert index.counters.pages == 3
        assert index.size(PipedriveObject.ORGANIZATION) == 1_201
    assert _candidate_ids(identity) == [["1201"]]
    assert sandbox.state.spent("acme") - spent_before == 3 * 10


async def test_a_first_sync_through_the_index_against_the_sandbox(sandbox: _InProcess) -> None:
    existing = sandbox.state.seed_organization(
        "acme", name="Company 7 (by hand)", domain="c7.example"
    )
    identity = FakeIdentity()
    companies = [
        company_record(f"co_{i}", name=f"Company {i}", domain=f"c{i}.example", domains=[])
        for i in range(40)
    ]
    persons = [
        person_record(
            f"pe_{i}",
            company_id=f"co_{i % 40}",
            full_name=f"Person {i}",
            email=f"p{i}@c{i % 40}.example",
            emails=[],
        )
        for i in range(80)
    ]
    async with sandbox.sink(identity) as sink:
        assert all(o.failed == () for o in await _gather(sink, companies))
        assert all(o.failed == () for o in await _gather(sink, persons))
        spent = sink.client.budget.spent
    orgs = sandbox.state.organizations("acme")
    assert len(orgs) == 40  # co_7 linked to the one made by hand, not duplicated
    assert identity.links[(EntityKind.COMPANY, "co_7")] == str(existing["id"])
    people = sandbox.state.persons("acme")
    assert len(people) == 80
    org_ids = {o["custom_fields"][sandbox.info.queast_id_field_key]: o["id"] for o in orgs}
    for stored in people:
        queast_id = stored["custom_fields"][sandbox.info.queast_id_field_key]
        assert stored["org_id"] == org_ids[f"co_{int(queast_id[3:]) % 40}"]
    stats = sandbox.state.stats()
    assert "GET /api/v2/organizations/search" not in stats.by_route
    assert "GET /api/v2/persons/search" not in stats.by_route
    # two list pages, 39 creates and 1 update, 80 creates: no token spent per lookup
    assert spent == 2 * 10 + 40 * 5 + 80 * 5
    assert spent == stats.tokens_spent["acme"]  # seeding costs nothing
