"""PipedriveClient through httpx.MockTransport: endpoints, pacing, budget, 429s, 401s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    PermanentError,
    QuotaExhaustedError,
    RateLimit,
    TransientError,
    http_client_factory,
)
from connectors.base.attempts import seconds_until_midnight_utc
from connectors.base.oauth import TokenSource
from connectors.pipedrive.auth import ApiTokenAuth, PipedriveOAuthSource
from connectors.pipedrive.client import (
    DailyBudget,
    PipedriveClient,
    PipedriveObject,
)
from connectors.pipedrive.config import PipedriveOAuth
from tests.unit.connectors.fakes import FakeClock
from tests.unit.connectors.pipedrive.fakes import BASE, MockPipedrive, body_of, failure, ok

ORGS = PipedriveObject.ORGANIZATION
PERSONS = PipedriveObject.PERSON
# FakeClock's wall time 1_700_000_000 is 22:13:20 UTC: 6,400 s before midnight.
TO_MIDNIGHT = 6_400.0


@asynccontextmanager
async def _client(
    api: MockPipedrive,
    *,
    clock: FakeClock | None = None,
    budget: int = 30_000,
    burst: RateLimit | None = None,
    search: RateLimit | None = None,
    auth: TokenSource | None = None,
) -> AsyncIterator[PipedriveClient]:
    clock = clock or FakeClock()
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        yield PipedriveClient(
            http_client=http,
            auth=auth or ApiTokenAuth(SecretStr("tok")),
            base_url=lambda: BASE,
            burst=(burst or RateLimit(rate=20, per_seconds=2)).bucket(clock=clock.monotonic),
            search_bucket=(search or RateLimit(rate=10, per_seconds=2)).bucket(
                clock=clock.monotonic
            ),
            budget=DailyBudget(budget, clock=clock.time),
            clock=clock,
        )


def _org(object_id: int = 7, **fields: Any) -> dict[str, Any]:
    return {"id": object_id, "name": "Acme", "custom_fields": {}, **fields}


# -- endpoints ----------------------------------------------------------------------------


async def test_create_posts_to_v2_with_the_api_token_header() -> None:
    api = MockPipedrive()
    api.on("POST", "/api/v2/organizations", ok(_org(), headers={"x-token-cost": "5"}))
    async with _client(api) as client:
        created = await client.create(ORGS, {"name": "Acme"})
    assert created.data["id"] == 7
    (request,) = api.requests
    assert request.headers["x-api-token"] == "tok"
    assert body_of(request) == {"name": "Acme"}
    assert "api_token" not in str(request.url)


async def test_updates_use_patch() -> None:
    api = MockPipedrive()
    api.on("PATCH", "/api/v2/persons/7", ok(_org()))
    async with _client(api) as client:
        updated = await client.update(PERSONS, 7, {"name": "Ada"})
    assert updated is not None
    assert [r.method for r in api.requests] == ["PATCH"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_missing_object_is_none(method: str) -> None:
    api = MockPipedrive()
    api.on(method, "/api/v2/organizations/7", failure(404))
    async with _client(api) as client:
        if method == "GET":
            assert await client.get(ORGS, 7) is None
        elif method == "PATCH":
            assert await client.update(ORGS, 7, {"name": "x"}) is None
        else:
            assert await client.delete(ORGS, 7) is None


async def test_get_asks_for_the_named_custom_fields() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/7", ok(_org()))
    async with _client(api) as client:
        await client.get(ORGS, 7, custom_fields=["k1", "k2"])
    assert api.requests[0].url.params["custom_fields"] == "k1,k2"


async def test_search_sends_term_fields_and_exact_match() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/persons/search", ok({"items": []}))
    async with _client(api) as client:
        await client.search(PERSONS, "ada+x@acme.example", fields="email", limit=5)
    params = api.requests[0].url.params
    assert params["term"] == "ada+x@acme.example"
    assert params["fields"] == "email"
    assert params["exact_match"] == "true"
    assert params["limit"] == "5"
    assert "ada%2Bx%40acme.example" in str(api.requests[0].url)


async def test_list_pages_carry_limit_cursor_changes_and_custom_fields() -> None:
    api = MockPipedrive()
    document = {
        "success": True,
        "data": [_org(1), _org(2)],
        "additional_data": {"next_cursor": "eyJpZCI6M30"},
    }
    api.on("GET", "/api/v2/organizations", httpx.Response(200, json=document))
    async with _client(api) as client:
        listed = await client.list_page(
            ORGS,
            cursor="abc",
            updated_since="2025-01-01T10:20:00Z",
            custom_fields=["k1", "k2"],
        )
        assert client.budget.spent == 10  # the list cost, without an x-token-cost header
    assert [o["id"] for o in listed.data] == [1, 2]
    assert listed.next_cursor == "eyJpZCI6M30"
    (request,) = api.requests
    assert dict(request.url.params) == {
        "limit": "500",
        "cursor": "abc",
        "updated_since": "2025-01-01T10:20:00Z",
        "custom_fields": "k1,k2",
    }


async def test_the_last_list_page_has_no_cursor_and_a_page_must_be_a_list() -> None:
    api = MockPipedrive()
    last = {"success": True, "data": [], "additional_data": {"next_cursor": None}}
    api.on("GET", "/api/v2/persons", httpx.Response(200, json=last), ok({"id": 1}))
    async with _client(api) as client:
        assert (await client.list_page(PERSONS, limit=1)).next_cursor is None
        with pytest.raises(TransientError, match="without a list"):
            await client.list_page(PERSONS)
        with pytest.raises(ValueError, match="limit"):
            await client.list_page(PERSONS, limit=501)
    assert len(api.requests) == 2


async def test_notes_are_posted_to_v1() -> None:
    api = MockPipedrive()
    api.on("POST", "/v1/notes", ok({"id": 3, "content": "x"}, status=201))
    async with _client(api) as client:
        note = await client.add_note({"content": "<p>x</p>", "org_id": 7})
    assert note.status_code == 201
    assert note.data["id"] == 3


async def test_base_url_is_asked_per_request() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/7", ok(_org()))
    hosts = iter(["https://a.pipedrive.com", "https://b.pipedrive.com"])
    clock = FakeClock()
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        client = PipedriveClient(
            http_client=http,
            auth=ApiTokenAuth(SecretStr("tok")),
            base_url=lambda: next(hosts),
            burst=RateLimit(rate=20, per_seconds=2).bucket(clock=clock.monotonic),
            search_bucket=RateLimit(rate=10, per_seconds=2).bucket(clock=clock.monotonic),
            budget=DailyBudget(100, clock=clock.time),
            clock=clock,
        )
        await client.get(ORGS, 7)
        await client.get(ORGS, 7)
    assert [r.url.host for r in api.requests] == ["a.pipedrive.com", "b.pipedrive.com"]


# -- outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (failure(500), TransientError, "server error"),
        (failure(400), PermanentError, "client error"),
        (failure(403), PermanentError, "client error"),
        (failure(410), PermanentError, "gone"),
        (httpx.Response(200, text="<html>"), TransientError, "unreadable"),
        (httpx.Response(200, json={"success": False}), PermanentError, "reported failure"),
        (ok({"name": "no id"}), TransientError, "without an object id"),
    ],
)
async def test_answers_become_connector_errors(
    answer: httpx.Response, error: type[Exception], reason: str
) -> None:
    api = MockPipedrive()
    api.on("POST", "/api/v2/organizations", answer)
    async with _client(api) as client:
        with pytest.raises(error, match=reason):
            await client.create(ORGS, {"name": "x"})


async def test_errors_never_carry_the_search_term() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/persons/search", failure(500))
    async with _client(api) as client:
        with pytest.raises(TransientError) as caught:
            await client.search(PERSONS, "ada@acme.example", fields="email")
    assert "ada" not in str(caught.value)
    assert caught.value.endpoint == "api.pipedrive.com/api/v2/persons/search"


# -- pacing -------------------------------------------------------------------------------


async def test_searches_are_paced_at_ten_per_two_seconds() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/search", ok({"items": []}))
    clock = FakeClock()
    async with _client(api, clock=clock) as client:
        for _ in range(12):
            await client.search(ORGS, "acme.example", fields="custom_fields")
    assert len(api.requests) == 12
    assert sum(clock.slept) == pytest.approx(0.4, abs=0.005)  # two waits of 0.2 s


async def test_a_search_wait_beyond_two_seconds_is_backpressure_without_a_request() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/search", ok({"items": []}))
    clock = FakeClock()
    async with _client(api, clock=clock, search=RateLimit(rate=1, per_seconds=5)) as client:
        await client.search(ORGS, "a.example", fields="custom_fields")
        with pytest.raises(BackpressureError) as caught:
            await client.search(ORGS, "a.example", fields="custom_fields")
    assert caught.value.retry_after == pytest.approx(5.0)
    assert len(api.requests) == 1


async def test_the_burst_bucket_follows_the_rate_limit_headers() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.5"}
    api.on("GET", "/api/v2/organizations/7", ok(_org(), headers=headers), ok(_org()))
    clock = FakeClock()
    async with _client(api, clock=clock) as client:
        await client.get(ORGS, 7)
        assert client.burst.capacity == 10  # the partner's lower limit
        await client.get(ORGS, 7)  # waits for the window the partner named
    # Nothing until the reset (1.5 s), then one token at the lowered rate (10 per 2 s).
    assert sum(clock.slept) == pytest.approx(1.5 + 0.2, abs=0.005)


async def test_search_headers_correct_the_search_bucket_only() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}
    api.on("GET", "/api/v2/organizations/search", ok({"items": []}, headers=headers))
    async with _client(api) as client:
        await client.search(ORGS, "a.example", fields="custom_fields")
        assert client.search_bucket.available == 0
        assert client.burst.available == 19


# -- the daily budget ---------------------------------------------------------------------


async def test_token_cost_is_charged_from_the_header_else_the_known_cost() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/search", ok({"items": []}, headers={"x-token-cost": "20"}))
    api.on("POST", "/api/v2/organizations", ok(_org()))  # no header: create costs 5
    async with _client(api) as client:
        await client.search(ORGS, "a.example", fields="custom_fields")
        await client.create(ORGS, {"name": "x"})
        assert client.budget.spent == 25
        assert client.budget.remaining == 30_000 - 25


async def test_a_spent_budget_is_quota_exhausted_until_midnight_utc() -> None:
    api = MockPipedrive()
    api.on("POST", "/api/v2/organizations", ok(_org(), headers={"x-token-cost": "5"}))
    clock = FakeClock()
    async with _client(api, clock=clock, budget=10) as client:
        await client.create(ORGS, {"name": "a"})
        await client.create(ORGS, {"name": "b"})
        with pytest.raises(QuotaExhaustedError) as caught:
            await client.create(ORGS, {"name": "c"})
        assert caught.value.retry_after == pytest.approx(TO_MIDNIGHT)
        assert len(api.requests) == 2  # refused locally, nothing sent
        clock.advance(TO_MIDNIGHT)
        await client.create(ORGS, {"name": "c"})
    assert len(api.requests) == 3


async def test_a_request_the_budget_cannot_pay_for_is_not_sent() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/7", ok(_org(), headers={"x-token-cost": "1"}))
    api.on("GET", "/api/v2/organizations/search", ok({"items": []}))
    async with _client(api, budget=20) as client:
        await client.get(ORGS, 7)
        with pytest.raises(QuotaExhaustedError):
            await client.search(ORGS, "a.example", fields="custom_fields")  # costs 20
        await client.get(ORGS, 7)
    assert len(api.requests) == 2


async def test_a_429_while_the_local_budget_is_spent_is_quota_exhausted() -> None:
    api = MockPipedrive()
    clock = FakeClock()

    async with _client(api, clock=clock, budget=100) as client:

        def concurrent_spend(request: httpx.Request) -> httpx.Response:
            client.budget.charge(100)  # another request of this connection spent the rest
            return failure(429, headers={"x-ratelimit-remaining": "0"})

        api.on("POST", "/api/v2/organizations", concurrent_spend)
        with pytest.raises(QuotaExhaustedError) as caught:
            await client.create(ORGS, {"name": "x"})
    assert caught.value.retry_after == pytest.approx(TO_MIDNIGHT)
    assert caught.value.status_code == 429


async def test_a_429_with_burst_left_is_the_shared_daily_budget() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "12", "x-ratelimit-reset": "1"}
    api.on("POST", "/api/v2/organizations", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(QuotaExhaustedError) as caught:
            await client.create(ORGS, {"name": "x"})
        # Pipedrive's day ends at its server's midnight: probe again within the hour
        assert caught.value.retry_after == pytest.approx(min(TO_MIDNIGHT, 3_600))
        assert client.budget.exhausted()
        with pytest.raises(QuotaExhaustedError):
            await client.get(ORGS, 7)
    assert len(api.requests) == 1


async def test_x_daily_requests_left_stops_writes_but_not_reads() -> None:
    api = MockPipedrive()
    api.on("POST", "/api/v2/organizations", ok(_org(), headers={"x-daily-requests-left": "0"}))
    api.on("GET", "/api/v2/organizations/7", ok(_org()))
    async with _client(api) as client:
        await client.create(ORGS, {"name": "a"})
        with pytest.raises(QuotaExhaustedError):
            await client.create(ORGS, {"name": "b"})
        await client.get(ORGS, 7)
    assert [r.method for r in api.requests] == ["POST", "GET"]


# -- other 429s ---------------------------------------------------------------------------


async def test_a_burst_429_is_backpressure_for_the_reset() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.2"}
    api.on("POST", "/api/v2/organizations", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(BackpressureError) as caught:
            await client.create(ORGS, {"name": "x"})
        assert client.burst.try_acquire() == pytest.approx(1.2, abs=0.11)
        assert client.budget.spent == 0  # a refused request costs nothing
    assert caught.value.retry_after == pytest.approx(1.2)
    assert caught.value.status_code == 429


async def test_a_429_without_headers_is_backpressure_for_two_seconds() -> None:
    api = MockPipedrive()
    api.on("POST", "/api/v2/organizations", failure(429))
    async with _client(api) as client:
        with pytest.raises(BackpressureError) as caught:
            await client.create(ORGS, {"name": "x"})
    assert caught.value.retry_after == 2.0


async def test_a_search_429_with_other_windows_headers_is_backpressure() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "15"}
    api.on("GET", "/api/v2/persons/search", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(BackpressureError):
            await client.search(PERSONS, "a@b.example", fields="email")
        assert client.budget.remaining == 30_000


async def test_a_search_429_with_search_window_left_is_the_daily_budget() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "9"}
    api.on("GET", "/api/v2/persons/search", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(QuotaExhaustedError):
            await client.search(PERSONS, "a@b.example", fields="email")
        assert client.budget.exhausted()


async def test_a_search_429_with_the_search_window_full_is_backpressure() -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0.4"}
    api.on("GET", "/api/v2/persons/search", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(BackpressureError) as caught:
            await client.search(PERSONS, "a@b.example", fields="email")
    assert caught.value.retry_after == pytest.approx(0.4)


# -- 401 ----------------------------------------------------------------------------------


def _oauth(api: MockPipedrive, http: httpx.AsyncClient, clock: FakeClock) -> PipedriveOAuthSource:
    config = PipedriveOAuth.model_validate(
        {
            "type": "oauth",
            "client_id": "cid",
            "client_secret": "cs",
            "refresh_token": "rt",
            "api_domain": "https://acme.pipedrive.com",
            "access_token": "old",
            "expires_at": clock.wall + 3000,
        }
    )
    return PipedriveOAuthSource(config, http_client=http, clock=clock)


def _token(access: str) -> httpx.Response:
    return httpx.Response(200, json={"access_token": access, "expires_in": 3599})


async def test_a_401_refreshes_once_and_retries() -> None:
    api = MockPipedrive()
    api.on("POST", "/oauth/token", _token("new"))
    api.on(
        "GET",
        "/api/v2/organizations/7",
        lambda r: ok(_org()) if r.headers["authorization"] == "Bearer new" else failure(401),
    )
    clock = FakeClock()
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        auth = _oauth(api, http, clock)
        async with _client(api, clock=clock, auth=auth) as client:
            found = await client.get(ORGS, 7)
    assert found is not None
    assert [(r.method, r.url.path) for r in api.requests] == [
        ("GET", "/api/v2/organizations/7"),
        ("POST", "/oauth/token"),
        ("GET", "/api/v2/organizations/7"),
    ]


async def test_a_second_401_after_the_refresh_is_an_authentication_error() -> None:
    api = MockPipedrive()
    api.on("POST", "/oauth/token", _token("new"))
    api.on("GET", "/api/v2/organizations/7", failure(401))
    clock = FakeClock()
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        auth = _oauth(api, http, clock)
        async with _client(api, clock=clock, auth=auth) as client:
            with pytest.raises(AuthenticationError):
                await client.get(ORGS, 7)
    assert len(api.calls("POST", "/oauth/token")) == 1
    assert len(api.calls("GET")) == 2


async def test_an_api_token_401_is_an_authentication_error_at_once() -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/7", failure(401))
    async with _client(api) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get(ORGS, 7)
    assert caught.value.status_code == 401
    assert len(api.requests) == 1


# -- the budget itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1_700_000_000.0, 6_400.0),
        (1_699_920_000.0, 86_400.0),  # exactly midnight: the next one
        (1_699_919_999.5, 0.5),
    ],
)
def test_seconds_until_midnight_utc(now: float, expected: float) -> None:
    assert seconds_until_midnight_utc(now) == pytest.approx(expected)


def test_the_budget_rolls_over_at_midnight_utc() -> None:
    clock = FakeClock()
    budget = DailyBudget(50, clock=clock.time)
    budget.charge(40)
    budget.observe_writes_left(0)
    assert not budget.affords(20)
    assert budget.exhausted(write=True)
    clock.advance(TO_MIDNIGHT - 1)
    assert budget.remaining == 10
    clock.advance(1)
    assert budget.remaining == 50
    assert budget.writes_left is None
    assert budget.seconds_until_reset() == 86_400


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DailyBudget(0, clock=FakeClock().time)


def test_a_refusal_by_pipedrive_holds_for_an_hour_at_most_then_probes() -> None:
    clock = FakeClock()  # TO_MIDNIGHT seconds before a midnight UTC
    budget = DailyBudget(50_000, clock=clock.time)
    budget.charge(10)
    budget.exhaust()  # Pipedrive's day (its server's) is spent, ours is not
    assert budget.exhausted()
    assert budget.seconds_until_reset() == pytest.approx(3_600)  # midnight is 6,400 s away
    clock.advance(3_600)
    assert not budget.exhausted(), "the hold ended: the next request probes"
    assert budget.remaining == 49_990, "our own count of the day is kept"
    budget.exhaust()  # refused again: another hold
    assert budget.exhausted()


@pytest.mark.parametrize("reset", ["1e308", "inf", "9" * 400])
async def test_a_hostile_reset_header_is_a_wait_of_at_most_an_hour(reset: str) -> None:
    api = MockPipedrive()
    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    api.on("POST", "/api/v2/organizations", failure(429, headers=headers))
    async with _client(api) as client:
        with pytest.raises(BackpressureError) as caught:
            await client.create(ORGS, {"name": "x"})
        assert client.burst.try_acquire() <= 3600.0 + 0.11  # the bucket reopens within the hour
    assert caught.value.retry_after == 3600.0


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-limit": "1e-300", "x-ratelimit-remaining": "5"},
        {"x-ratelimit-limit": "nan", "x-ratelimit-remaining": "nan", "x-ratelimit-reset": "nan"},
        {"x-token-cost": "1e308", "x-daily-requests-left": "1e308"},
    ],
)
async def test_hostile_rate_limit_numbers_never_stop_the_connection(
    headers: dict[str, str],
) -> None:
    api = MockPipedrive()
    api.on("GET", "/api/v2/organizations/7", ok(_org(), headers=headers), ok(_org()))
    async with _client(api) as client:
        await client.get(ORGS, 7)
        assert client.burst.refill_per_second >= 1.0 / 2.0  # at least the limit of one per window
        assert client.budget.spent <= 1e9
