"""PipedriveSink end to end through httpx.MockTransport and a fake identity resolver."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    EntityKind,
    HeldForReviewError,
    IdentityOutcome,
    PermanentError,
    QuotaExhaustedError,
    SinkContext,
    TransientError,
)
from connectors.pipedrive import PipedriveConnectionConfig, PipedriveSink
from tests.unit.connectors.fakes import FakeClock, MemoryGrantStore
from tests.unit.connectors.pipedrive.fakes import (
    API_TOKEN,
    DOMAIN_KEY,
    QUEAST_KEY,
    FakeIdentity,
    MockPipedrive,
    api_token_config,
    body_of,
    company_record,
    deletion_record,
    failure,
    job_ad_record,
    ok,
    open_sink,
    person_record,
    search_result,
    signal_record,
)

ORG_SEARCH = "/api/v2/organizations/search"
PERSON_SEARCH = "/api/v2/persons/search"


def _writes(api: MockPipedrive) -> list[httpx.Request]:
    return [r for r in api.requests if r.method in ("POST", "PATCH", "DELETE")]


def _org(object_id: int, **custom: Any) -> dict[str, Any]:
    return {"id": object_id, "name": "Acme", "website": None, "custom_fields": custom}


def _person(object_id: int, *emails: str) -> dict[str, Any]:
    return {
        "id": object_id,
        "name": "Ada",
        "emails": [{"value": e, "primary": i == 0, "label": "work"} for i, e in enumerate(emails)],
        "custom_fields": {},
    }


# -- setup --------------------------------------------------------------------------------


async def test_setup_needs_an_identity_resolver() -> None:
    config = PipedriveConnectionConfig.validate_for_connection(api_token_config())
    context = SinkContext(tenant_id="t", connection_id="c", connector="pipedrive", config=config)
    with pytest.raises(PermanentError, match="identity resolver"):
        async with PipedriveSink(context):
            pass


async def test_setup_refuses_a_local_url_without_the_private_network_flag() -> None:
    config = PipedriveConnectionConfig.validate_for_connection(
        api_token_config(base_url="http://127.0.0.1:9"), allow_private_networks=True
    )
    context = SinkContext(
        tenant_id="t",
        connection_id="c",
        connector="pipedrive",
        config=config,
        identity=FakeIdentity(),
    )
    with pytest.raises(PermanentError, match="base_url not allowed"):
        async with PipedriveSink(context):
            pass


def test_the_sink_declares_the_connector() -> None:
    assert PipedriveSink.name == "pipedrive"
    assert PipedriveSink.max_batch_size == 1
    assert PipedriveSink.config_class is PipedriveConnectionConfig
    assert PipedriveSink.default_rate_limit is not None
    assert PipedriveSink.default_rate_limit.rate == 20
    assert PipedriveSink.default_rate_limit.per_seconds == 2
    search = PipedriveSink.search_rate_limit
    assert (search.rate, search.per_seconds, search.burst) == (10, 2, 1)


async def test_searches_through_the_sink_are_evenly_spaced() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/organizations", ok(_org(1)))
    clock = FakeClock()
    async with open_sink(api, clock=clock) as sink:
        records = [company_record(f"co_{i}", domain=f"c{i}.example") for i in range(11)]
        outcome = await sink.deliver(records)
    assert len(outcome.delivered) == 11
    assert len(api.calls("GET", ORG_SEARCH)) == 11
    assert sum(clock.slept) == pytest.approx(10 * 0.2, abs=0.02)  # 10 per 2 s at most


async def test_the_plan_and_the_override_size_the_burst_bucket() -> None:
    async with open_sink(MockPipedrive(), settings=api_token_config(plan="premium")) as sink:
        assert sink.client.burst.capacity == 100
    oauth = {
        "type": "oauth",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
        "api_domain": "https://acme.pipedrive.com",
    }
    async with open_sink(MockPipedrive(), settings=api_token_config(auth=oauth)) as sink:
        assert sink.client.burst.capacity == 80
    async with open_sink(
        MockPipedrive(), settings=api_token_config(rate_limit_per_second=3)
    ) as sink:
        assert sink.client.burst.capacity == 3
        assert sink.client.budget.budget == 30_000


# -- companies ----------------------------------------------------------------------------


async def test_a_linked_company_is_patched() -> None:
    api = MockPipedrive()
    api.on("PATCH", "/api/v2/organizations/42", ok(_org(42)))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    (result,) = outcome.delivered
    assert result.partner_object_id == "42"
    assert result.status_code == 200
    (request,) = api.requests
    assert request.method == "PATCH"
    assert request.headers["x-api-token"] == API_TOKEN
    assert body_of(request) == {
        "name": "Acme GmbH",
        "custom_fields": {DOMAIN_KEY: "acme.example", QUEAST_KEY: "co_1"},
    }
    assert identity.decided == []


async def test_an_unmatched_company_is_created_and_linked() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/organizations", ok(_org(77)))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    assert outcome.delivered[0].partner_object_id == "77"
    search, create = api.requests
    assert search.url.params["term"] == "acme.example"
    assert search.url.params["fields"] == "custom_fields"
    assert search.url.params["exact_match"] == "true"
    assert body_of(create)["custom_fields"] == {DOMAIN_KEY: "acme.example", QUEAST_KEY: "co_1"}
    assert identity.decided == [(EntityKind.COMPANY, "co_1", ())]
    assert identity.linked_by_connector == [(EntityKind.COMPANY, "co_1", "77", "created")]


async def test_a_matching_organization_is_read_linked_and_patched() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result(5)))
    api.on("GET", "/api/v2/organizations/5", ok(_org(5, **{DOMAIN_KEY: "acme.example"})))
    api.on("PATCH", "/api/v2/organizations/5", ok(_org(5)))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    assert outcome.delivered[0].partner_object_id == "5"
    assert [r.method for r in api.requests] == ["GET", "GET", "PATCH"]
    assert api.requests[1].url.params["custom_fields"] == f"{DOMAIN_KEY},{QUEAST_KEY}"
    (_, _, candidates) = identity.decided[0]
    assert candidates[0].partner_object_id == "5"
    assert candidates[0].domains == ("acme.example",)
    assert identity.links[(EntityKind.COMPANY, "co_1")] == "5"
    assert identity.linked_by_connector == []  # the resolver stored the link itself


async def test_an_ambiguous_company_is_held_and_nothing_is_written() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result(5, 6)))
    api.on("GET", "/api/v2/organizations/5", ok(_org(5, **{DOMAIN_KEY: "acme.example"})))
    api.on("GET", "/api/v2/organizations/6", ok(_org(6, **{DOMAIN_KEY: "acme.example"})))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    (failed,) = outcome.failed
    assert isinstance(failed.error, HeldForReviewError)
    assert failed.attempted
    assert outcome.delivered == ()
    assert _writes(api) == []
    assert identity.links == {}


async def test_a_held_record_does_not_stop_the_batch() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("PATCH", "/api/v2/organizations/42", ok(_org(42)))
    identity = FakeIdentity(
        links={(EntityKind.COMPANY, "co_2"): "42"}, outcome=IdentityOutcome.AMBIGUOUS
    )
    held, linked = company_record("co_1"), company_record("co_2")
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([held, linked])
    assert [f.delivery_id for f in outcome.failed] == [held.delivery_id]
    assert [d.delivery_id for d in outcome.delivered] == [linked.delivery_id]
    assert [r.method for r in _writes(api)] == ["PATCH"]


async def test_a_company_without_domain_is_searched_by_exact_name() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/organizations", ok(_org(3)))
    async with open_sink(api) as sink:
        await sink.deliver([company_record(domain=None, domains=[])])
    params = api.requests[0].url.params
    assert (params["term"], params["fields"]) == ("Acme GmbH", "name")
    assert body_of(api.requests[1]) == {"name": "Acme GmbH", "custom_fields": {QUEAST_KEY: "co_1"}}


async def test_a_company_without_name_or_domain_is_not_searched() -> None:
    api = MockPipedrive()
    async with open_sink(api) as sink:
        outcome = await sink.deliver([company_record(name=None, domain=None, domains=[])])
    assert isinstance(outcome.failed[0].error, PermanentError)
    assert api.requests == []


async def test_a_linked_organization_that_is_gone_is_permanent() -> None:
    api = MockPipedrive()
    api.on("PATCH", "/api/v2/organizations/42", failure(404))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    error = outcome.failed[0].error
    assert isinstance(error, PermanentError)
    assert "no longer exists" in error.reason


async def test_a_stored_link_that_is_not_a_pipedrive_id_is_permanent() -> None:
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "abc"})
    async with open_sink(MockPipedrive(), identity=identity) as sink:
        outcome = await sink.deliver([company_record()])
    assert isinstance(outcome.failed[0].error, PermanentError)


# -- persons ------------------------------------------------------------------------------


async def test_an_unmatched_person_is_created_in_its_linked_organization() -> None:
    api = MockPipedrive()
    api.on("GET", PERSON_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/persons", ok(_person(11)))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([person_record()])
    assert outcome.delivered[0].partner_object_id == "11"
    search, create = api.requests
    assert search.url.params["term"] == "ada@acme.example"
    assert search.url.params["fields"] == "email"
    assert body_of(create) == {
        "name": "Ada Lovelace",
        "emails": [{"value": "ada@acme.example", "primary": True, "label": "work"}],
        "org_id": 42,
        "custom_fields": {QUEAST_KEY: "pe_1"},
    }
    assert identity.linked_by_connector == [(EntityKind.PERSON, "pe_1", "11", "created")]


async def test_a_person_whose_company_is_not_linked_has_no_org_id() -> None:
    api = MockPipedrive()
    api.on("GET", PERSON_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/persons", ok(_person(11)))
    async with open_sink(api) as sink:
        await sink.deliver([person_record()])
    assert "org_id" not in body_of(api.requests[1])


async def test_a_linked_person_is_read_and_patched_keeping_its_emails() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/persons/11", ok(_person(11, "ada@old.example")))
    api.on("PATCH", "/api/v2/persons/11", ok(_person(11)))
    identity = FakeIdentity(links={(EntityKind.PERSON, "pe_1"): "11"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([person_record()])
    assert outcome.delivered[0].partner_object_id == "11"
    patch = api.requests[-1]
    assert patch.method == "PATCH"
    assert body_of(patch)["emails"] == [
        {"value": "ada@old.example", "primary": True, "label": "work"},
        {"value": "ada@acme.example", "primary": False, "label": "work"},
    ]


async def test_a_person_matched_by_email_is_linked_and_patched() -> None:
    api = MockPipedrive()
    api.on("GET", PERSON_SEARCH, ok(search_result(11)))
    api.on("GET", "/api/v2/persons/11", ok(_person(11, "ADA@acme.example")))
    api.on("PATCH", "/api/v2/persons/11", ok(_person(11)))
    identity = FakeIdentity()
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([person_record()])
    assert outcome.delivered[0].partner_object_id == "11"
    assert "emails" not in body_of(api.requests[-1])  # nothing new to add
    assert identity.links[(EntityKind.PERSON, "pe_1")] == "11"


async def test_an_ambiguous_person_is_held() -> None:
    api = MockPipedrive()
    api.on("GET", PERSON_SEARCH, ok(search_result(1, 2)))
    api.on("GET", "/api/v2/persons/1", ok(_person(1, "ada@acme.example")))
    api.on("GET", "/api/v2/persons/2", ok(_person(2, "ada@acme.example")))
    async with open_sink(api) as sink:
        outcome = await sink.deliver([person_record()])
    assert isinstance(outcome.failed[0].error, HeldForReviewError)
    assert _writes(api) == []


# -- notes --------------------------------------------------------------------------------


async def test_a_signal_becomes_a_note_on_the_linked_organization() -> None:
    api = MockPipedrive()
    api.on("POST", "/v1/notes", ok({"id": 501, "content": "x"}, status=201))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([signal_record()])
    (result,) = outcome.delivered
    assert (result.partner_object_id, result.status_code) == ("501", 201)
    body = body_of(api.requests[0])
    assert body["org_id"] == 42
    assert "JOB_ADS_SPIKE" in body["content"]
    assert set(body) == {"content", "org_id"}


async def test_a_job_ad_becomes_a_note_on_the_linked_organization() -> None:
    api = MockPipedrive()
    api.on("POST", "/v1/notes", ok({"id": 502}, status=201))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([job_ad_record()])
    assert outcome.delivered[0].partner_object_id == "502"
    assert "Senior Engineer" in body_of(api.requests[0])["content"]


@pytest.mark.parametrize("record", [signal_record(), job_ad_record()])
async def test_a_note_for_an_unlinked_organization_waits(record: Any) -> None:
    api = MockPipedrive()
    async with open_sink(api) as sink:
        outcome = await sink.deliver([record])
    error = outcome.failed[0].error
    assert isinstance(error, TransientError)
    assert error.reason == "organization not linked yet"
    assert api.requests == []


# -- deletions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "collection"), [("company", "organizations"), ("person", "persons")]
)
async def test_a_linked_deletion_deletes_the_object(kind: str, collection: str) -> None:
    api = MockPipedrive()
    api.on("DELETE", f"/api/v2/{collection}/42", ok({"id": 42}))
    entity = EntityKind.COMPANY if kind == "company" else EntityKind.PERSON
    identity = FakeIdentity(links={(entity, "x_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([deletion_record(kind, "x_1")])
    assert outcome.delivered[0].partner_object_id == "42"
    assert [r.method for r in api.requests] == ["DELETE"]


async def test_an_unlinked_deletion_is_delivered_without_a_request() -> None:
    api = MockPipedrive()
    async with open_sink(api) as sink:
        outcome = await sink.deliver([deletion_record("company", "co_9")])
    (result,) = outcome.delivered
    assert (result.status_code, result.partner_object_id) == (204, None)
    assert api.requests == []


async def test_deleting_an_object_already_gone_is_delivered() -> None:
    api = MockPipedrive()
    api.on("DELETE", "/api/v2/persons/42", failure(404))
    identity = FakeIdentity(links={(EntityKind.PERSON, "pe_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([deletion_record("person", "pe_1")])
    assert outcome.delivered[0].status_code == 404


# -- limits and budget through the sink ----------------------------------------------------


async def test_a_spent_budget_fails_records_with_quota_exhausted() -> None:
    api = MockPipedrive()
    api.on("PATCH", "/api/v2/organizations/42", ok(_org(42), headers={"x-token-cost": "5"}))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    settings = api_token_config(daily_budget=5)
    async with open_sink(api, identity=identity, settings=settings) as sink:
        records = [company_record(), company_record(), company_record()]
        outcome = await sink.deliver(records)
    assert len(outcome.delivered) == 1
    errors = [f.error for f in outcome.failed]
    assert all(isinstance(e, QuotaExhaustedError) for e in errors)
    assert [f.attempted for f in outcome.failed] == [True, False]
    assert errors[0].retry_after == pytest.approx(6_400)  # type: ignore[attr-defined]
    assert len(api.requests) == 1


async def test_a_burst_429_is_backpressure_and_stops_the_batch() -> None:
    api = MockPipedrive()
    api.on(
        "PATCH",
        "/api/v2/organizations/42",
        failure(429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}),
    )
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([company_record(), company_record()])
    assert all(isinstance(f.error, BackpressureError) for f in outcome.failed)
    assert [f.attempted for f in outcome.failed] == [True, False]


# -- OAuth through the sink ----------------------------------------------------------------


def _oauth_settings(clock: FakeClock, **auth: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "oauth",
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "refresh-1",
        "api_domain": "https://acme.pipedrive.com",
    }
    values.update(auth)
    return api_token_config(auth=values)


async def test_oauth_refreshes_then_calls_the_api_domain_it_was_given() -> None:
    api = MockPipedrive()
    api.on(
        "POST",
        "/oauth/token",
        httpx.Response(
            200,
            json={
                "access_token": "access-1",
                "expires_in": 3599,
                "refresh_token": "refresh-2",
                "api_domain": "https://acme-eu.pipedrive.com",
            },
        ),
    )
    api.on("PATCH", "/api/v2/organizations/42", ok(_org(42)))
    grants = MemoryGrantStore()
    clock = FakeClock()
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    async with open_sink(
        api,
        identity=identity,
        clock=clock,
        settings=_oauth_settings(clock),
        grants=grants,
    ) as sink:
        outcome = await sink.deliver([company_record()])
    assert outcome.delivered
    token, patch = api.requests
    assert token.url.host == "oauth.pipedrive.com"
    assert patch.url.host == "acme-eu.pipedrive.com"
    assert patch.headers["authorization"] == "Bearer access-1"
    assert "x-api-token" not in patch.headers
    assert [t.refresh_token.get_secret_value() for t in grants.saved] == ["refresh-2"]


async def test_oauth_401_refreshes_once_then_is_an_authentication_error() -> None:
    api = MockPipedrive()
    api.on(
        "POST",
        "/oauth/token",
        httpx.Response(200, json={"access_token": "a2", "expires_in": 99999}),
    )
    api.on("PATCH", "/api/v2/organizations/42", failure(401))
    clock = FakeClock()
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    settings = _oauth_settings(clock, access_token="a1", expires_at=clock.wall + 3000)
    async with open_sink(api, identity=identity, clock=clock, settings=settings) as sink:
        outcome = await sink.deliver([company_record()])
    assert isinstance(outcome.failed[0].error, AuthenticationError)
    assert [(r.method, r.url.path) for r in api.requests] == [
        ("PATCH", "/api/v2/organizations/42"),
        ("POST", "/oauth/token"),
        ("PATCH", "/api/v2/organizations/42"),
    ]
    assert api.requests[0].url.host == "acme.pipedrive.com"


# -- logging ------------------------------------------------------------------------------


async def test_logs_carry_ids_never_tokens_or_personal_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = MockPipedrive()
    api.on("GET", PERSON_SEARCH, failure(500))
    async with open_sink(api) as sink:
        sink.context.logger.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            outcome = await sink.deliver([person_record()])
    assert isinstance(outcome.failed[0].error, TransientError)
    assert "delivery.attempt.failed" in caplog.messages
    logged = " ".join(str(vars(r)) for r in caplog.records)
    for secret in (API_TOKEN, "ada@acme.example", "Ada Lovelace"):
        assert secret not in logged


# -- correlation and request ids ----------------------------------------------------------


def _traced(api: MockPipedrive) -> list[tuple[str, str, str | None]]:
    request_ids = [r.headers["x-request-id"] for r in api.requests]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in request_ids)
    assert len(set(request_ids)) == len(request_ids)  # one per request
    return [(r.method, r.url.path, r.headers.get("x-correlation-id")) for r in api.requests]


async def test_every_request_for_a_record_carries_its_correlation_id() -> None:
    api = MockPipedrive()
    api.on("GET", ORG_SEARCH, ok(search_result(5)))
    api.on("GET", "/api/v2/organizations/5", ok(_org(5, **{DOMAIN_KEY: "acme.example"})))
    api.on("PATCH", "/api/v2/organizations/5", ok(_org(5)))
    api.on("GET", PERSON_SEARCH, ok(search_result()))
    api.on("POST", "/api/v2/persons", ok(_person(11)))
    api.on("POST", "/v1/notes", ok({"id": 501}, status=201))
    identity = FakeIdentity()
    company = company_record().model_copy(update={"correlation_id": "corr-org"})
    person = person_record().model_copy(update={"correlation_id": "corr-person"})
    note = signal_record().model_copy(update={"correlation_id": "corr-note"})
    async with open_sink(api, identity=identity) as sink:
        for record in (company, person, note):
            outcome = await sink.deliver([record])
            assert outcome.failed == ()
    assert _traced(api) == [
        ("GET", ORG_SEARCH, "corr-org"),
        ("GET", "/api/v2/organizations/5", "corr-org"),
        ("PATCH", "/api/v2/organizations/5", "corr-org"),
        ("GET", PERSON_SEARCH, "corr-person"),
        ("POST", "/api/v2/persons", "corr-person"),
        ("POST", "/v1/notes", "corr-note"),
    ]


async def test_a_correlation_id_that_is_no_header_value_is_left_out() -> None:
    api = MockPipedrive()
    api.on("PATCH", "/api/v2/organizations/42", ok(_org(42)))
    identity = FakeIdentity(links={(EntityKind.COMPANY, "co_1"): "42"})
    record = company_record().model_copy(update={"correlation_id": "bad id\nwith newline"})
    async with open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([record])
    assert outcome.failed == ()
    assert _traced(api) == [("PATCH", "/api/v2/organizations/42", None)]
