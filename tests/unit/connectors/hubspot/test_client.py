"""Pacing and answer parsing of the HubSpot client (no network)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import (
    BackpressureError,
    PermanentError,
    QuotaExhaustedError,
    RateLimit,
    TransientError,
    http_client_factory,
)
from connectors.hubspot.auth import PrivateAppToken
from connectors.hubspot.client import (
    HubSpotClient,
    HubSpotRateLimiter,
    RequestDeferred,
    SearchBatcher,
    SearchResult,
    input_error,
    parse_batch_write,
    seconds_to_utc_midnight,
)
from connectors.hubspot.config import HubSpotLimits
from connectors.hubspot.search import Lookup, LookupStrategy
from tests.unit.connectors.fakes import FakeClock

ENDPOINT = "api.hubapi.com/crm/v3/objects/companies/batch/upsert"


def _limiter(clock: FakeClock, *, burst: int = 100, search: int = 5) -> HubSpotRateLimiter:
    limits = HubSpotLimits(
        burst=RateLimit(rate=burst, per_seconds=10),
        search=RateLimit(rate=search, per_seconds=1),
        daily=250_000,
    )
    return HubSpotRateLimiter(limits, clock=clock)


def test_burst_pacing_follows_hubspots_rolling_window_not_just_a_bucket() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    assert all(limiter.reserve("burst") == 0.0 for _ in range(100))
    wait = limiter.reserve("burst")
    assert 9.9 < wait <= 10.1
    clock.advance(5)  # a bucket alone would grant 50 more requests here
    assert 4.9 < limiter.reserve("burst") <= 5.1
    clock.advance(5.1)
    assert limiter.reserve("burst") == 0.0


def test_a_slot_counts_from_the_answer_not_from_when_it_was_taken() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, burst=1)
    taken = clock.monotonic()
    assert limiter.reserve("burst", now=taken) == 0.0
    clock.advance(3)  # the answer took 3 s: HubSpot may have stamped the request late
    limiter.settle("burst", taken)
    clock.advance(7.1)  # 10.1 s after the slot was taken, 7.1 s after the answer
    assert limiter.reserve("burst") == pytest.approx(2.95)
    clock.advance(2.95)
    assert limiter.reserve("burst") == 0.0


def test_the_burst_bucket_spaces_requests_evenly_over_the_window() -> None:
    clock = FakeClock()
    limits = HubSpotLimits(
        burst=RateLimit(rate=100, per_seconds=10, burst=3),
        search=RateLimit(rate=5, per_seconds=1),
        daily=None,
    )
    limiter = HubSpotRateLimiter(limits, clock=clock)
    assert [limiter.reserve("burst") for _ in range(3)] == [0.0] * 3
    assert limiter.reserve("burst") == pytest.approx(0.1)  # then one every tenth of a second
    sent = [clock.monotonic()] * 3
    for step in range(300):
        clock.advance(0.1 if step % 10 else 0.25)  # now and then late: it catches up
        while limiter.reserve("burst") == 0.0:
            sent.append(clock.monotonic())
    assert len(sent) >= 300
    assert max(sum(1 for s in sent if t - 10 < s <= t) for t in sent) <= 100


def test_search_has_its_own_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    assert all(limiter.reserve("search") == 0.0 for _ in range(5))
    assert limiter.reserve("search") > 0.9
    assert limiter.reserve("burst") == 0.0
    clock.advance(1.06)
    assert limiter.reserve("search") == 0.0


def test_rate_limit_headers_lower_the_limit_and_drain_the_bucket() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe(
        httpx.Headers(
            {
                "X-HubSpot-RateLimit-Max": "20",
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            }
        )
    )
    assert limiter.burst_limit == 20
    wait = limiter.peek("burst")
    assert wait == pytest.approx(0.5)  # 20 per 10 s refill
    assert limiter.reserve("burst") == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.reserve("burst") == 0.0


def test_higher_header_limits_are_ignored() -> None:
    limiter = _limiter(FakeClock())
    limiter.observe(
        httpx.Headers({"X-HubSpot-RateLimit-Max": "250", "X-HubSpot-RateLimit-Remaining": "249"})
    )
    assert limiter.burst_limit == 100


def test_daily_remaining_zero_blocks_until_midnight_utc() -> None:
    clock = FakeClock(wall=datetime(2026, 11, 26, 22, 0, tzinfo=UTC).timestamp())
    limiter = _limiter(clock)
    limiter.observe(httpx.Headers({"X-HubSpot-RateLimit-Daily-Remaining": "0"}))
    assert limiter.quota_reset_in() == pytest.approx(2 * 3600)
    clock.advance(2 * 3600)
    assert limiter.quota_reset_in() is None


def test_a_429_blocks_the_scope_until_the_oldest_request_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.reserve("burst")
    clock.advance(3)
    wait = limiter.throttled("burst", None)
    assert wait == pytest.approx(7.05)
    assert limiter.peek("burst") == pytest.approx(7.05)
    assert limiter.reserve("burst") == pytest.approx(7.05)


def test_seconds_to_utc_midnight() -> None:
    noon = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
    assert seconds_to_utc_midnight(noon) == 12 * 3600
    assert (
        seconds_to_utc_midnight(datetime(2026, 3, 1, 23, 59, 59, 900_000, tzinfo=UTC).timestamp())
        == 1.0
    )


def _response(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_a_207_maps_results_and_errors_back_to_inputs_by_trace_id() -> None:
    body = {
        "status": "COMPLETE",
        "results": [
            {"id": "11", "objectWriteTraceId": "d_1", "new": True, "properties": {}},
            {"id": "12", "objectWriteTraceId": "d_3", "new": False, "properties": {}},
        ],
        "numErrors": 1,
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid: secret@example.com",
                "context": {"objectWriteTraceId": ["d_2"]},
                "errors": [
                    {"code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": ["queast_id"]}}
                ],
            }
        ],
    }
    parsed = parse_batch_write(_response(207, body), ["d_1", "d_2", "d_3"], endpoint=ENDPOINT)
    assert parsed.status_code == 207
    assert parsed.outcomes["d_1"].object_id == "11"
    assert parsed.outcomes["d_1"].new is True
    assert parsed.outcomes["d_3"].new is False
    error = parsed.outcomes["d_2"].error
    assert isinstance(error, PermanentError)
    assert error.reason == "HubSpot VALIDATION_ERROR (PROPERTY_DOESNT_EXIST) on queast_id"
    assert "secret@example.com" not in str(error)


def test_results_without_trace_ids_match_by_key_then_by_position() -> None:
    keyed = parse_batch_write(
        _response(200, {"results": [{"id": "9", "properties": {"queast_id": "co_2"}}]}),
        ["d_1"],
        endpoint=ENDPOINT,
        key_of=lambda r: {"co_2": "d_1"}.get(r["properties"]["queast_id"]),
    )
    assert keyed.outcomes["d_1"].object_id == "9"
    ordered = parse_batch_write(
        _response(201, {"results": [{"id": "1"}, {"id": "2"}]}), ["d_a", "d_b"], endpoint=ENDPOINT
    )
    assert (ordered.outcomes["d_a"].object_id, ordered.outcomes["d_b"].object_id) == ("1", "2")


def test_errors_by_record_id_and_inputs_left_without_an_answer() -> None:
    body = {
        "results": [],
        "errors": [{"category": "OBJECT_NOT_FOUND", "context": {"ids": ["501"]}}],
    }
    parsed = parse_batch_write(
        _response(207, body), ["d_1", "d_2"], endpoint=ENDPOINT, trace_of_id={"501": "d_1"}
    )
    assert isinstance(parsed.outcomes["d_1"].error, PermanentError)
    assert type(parsed.outcomes["d_2"].error) is TransientError
    unmatched = parse_batch_write(_response(207, body), ["d_9"], endpoint=ENDPOINT)
    assert isinstance(unmatched.outcomes["d_9"].error, PermanentError)
    silent = parse_batch_write(_response(207, {"results": []}), ["d_9"], endpoint=ENDPOINT)
    assert type(silent.outcomes["d_9"].error) is TransientError


@pytest.mark.parametrize(
    ("category", "expected", "retry_after"),
    [
        ("VALIDATION_ERROR", PermanentError, None),
        ("OBJECT_NOT_FOUND", PermanentError, None),
        ("CONFLICT", TransientError, 5.0),
        ("INTERNAL_ERROR", TransientError, None),
        (None, TransientError, None),
    ],
)
def test_input_error_categories(
    category: str | None, expected: type[Exception], retry_after: float | None
) -> None:
    error = input_error({"category": category}, status_code=207, endpoint=ENDPOINT)
    assert type(error) is expected
    assert getattr(error, "retry_after", None) == retry_after


# -- shared searches ----------------------------------------------------------------------------


class SearchAPI:
    """Answers searches with one object per value looked up; ``fail`` scripts statuses."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await self.gate.wait()
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.fail:
            status = self.fail.pop(0)
            policy = {"policyName": "SECONDLY"} if status == 429 else {}
            return httpx.Response(status, json={"category": "VALIDATION_ERROR", **policy})
        values = [v for g in body["filterGroups"] for f in g["filters"] for v in f["values"]]
        results = [{"id": str(n), "properties": {"domain": v}} for n, v in enumerate(values)]
        return httpx.Response(200, json={"total": len(results), "results": results})


def _client(api: SearchAPI, clock: FakeClock, *, search_per_second: int = 5) -> HubSpotClient:
    transport = httpx.MockTransport(api)
    return HubSpotClient(
        http_client=http_client_factory(transport=transport),
        api_root="https://api.hubapi.com",
        tokens=PrivateAppToken(SecretStr("pat")),
        limiter=_limiter(clock, search=search_per_second),
        clock=clock,
        logger=logging.getLogger("test.hubspot.client"),
        max_wait=1.0,
    )


def _domains(*values: str) -> list[Lookup]:
    return [Lookup(LookupStrategy.DOMAIN, "domain", v) for v in values]


def _values(body: dict[str, Any]) -> list[str]:
    return [v for g in body["filterGroups"] for f in g["filters"] for v in f["values"]]


async def test_lookups_of_concurrent_callers_share_one_request() -> None:
    api = SearchAPI()
    api.gate.clear()  # the first request waits: the others gather meanwhile
    batcher = SearchBatcher(_client(api, FakeClock()), "companies", properties=["domain"])
    first = asyncio.create_task(batcher.search(_domains("a.example")))
    await asyncio.sleep(0)
    later: list[asyncio.Task[Any]] = [
        asyncio.create_task(batcher.search(_domains(f"{n}.example", "shared.example")))
        for n in "bcd"
    ]
    await asyncio.sleep(0.01)
    api.gate.set()
    answers = await asyncio.gather(first, *later)
    await batcher.close()
    assert [_values(b) for b in api.bodies] == [
        ["a.example"],
        ["b.example", "shared.example", "c.example", "d.example"],
    ]
    for answer in answers[1:]:
        (only,) = answer
        assert isinstance(only.result, SearchResult)
        assert "shared.example" in {k[1] for k in only.keys}
        assert len(only.result.objects) == 4  # everything the request found, to match back


async def test_a_400_answers_only_the_lookups_it_carried() -> None:
    api = SearchAPI()
    api.fail = [400]
    batcher = SearchBatcher(_client(api, FakeClock()), "companies", properties=["domain"])
    many = _domains(*[f"company-{n:04}.example.com" for n in range(150)])
    (failed, found) = await batcher.search(many)
    await batcher.close()
    assert isinstance(failed.result, PermanentError)
    assert isinstance(found.result, SearchResult)
    assert len(failed.keys) + len(found.keys) == 150
    assert not failed.keys & found.keys


async def test_a_failure_of_the_connection_answers_every_waiting_lookup() -> None:
    api = SearchAPI()
    api.fail = [429]
    api.gate.clear()
    batcher = SearchBatcher(_client(api, FakeClock()), "companies", properties=["domain"])
    callers = [asyncio.create_task(batcher.search(_domains(f"{n}.example"))) for n in "abc"]
    await asyncio.sleep(0.01)
    api.gate.set()
    answers = await asyncio.gather(*callers)
    await batcher.close()
    assert len(api.bodies) == 1  # the others were not sent into the same wall
    assert all(isinstance(a.result, BackpressureError) for (a,) in answers)


async def test_a_search_wait_over_the_limit_defers_every_waiting_lookup() -> None:
    api = SearchAPI()
    clock = FakeClock()
    client = _client(api, clock, search_per_second=1)
    batcher = SearchBatcher(client, "companies", properties=["domain"])
    many = _domains(*[f"company-{n:04}.example.com" for n in range(300)])
    answers = await batcher.search(many)
    await batcher.close()
    assert isinstance(answers[0].result, SearchResult)
    assert isinstance(answers[1].result, RequestDeferred)
    assert len(api.bodies) == 1


async def test_closing_cancels_callers_still_waiting() -> None:
    api = SearchAPI()
    api.gate.clear()
    batcher = SearchBatcher(_client(api, FakeClock()), "companies", properties=["domain"])
    caller = asyncio.create_task(batcher.search(_domains("a.example")))
    await asyncio.sleep(0.01)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await batcher.search([]) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-HubSpot-RateLimit-Max": "1", "X-HubSpot-RateLimit-Interval-Milliseconds": "1e308"},
        {"X-HubSpot-RateLimit-Max": "1e-300", "X-HubSpot-RateLimit-Remaining": "0"},
        {"X-HubSpot-RateLimit-Max": "inf", "X-HubSpot-RateLimit-Interval-Milliseconds": "inf"},
        {"X-HubSpot-RateLimit-Max": "nan", "X-HubSpot-RateLimit-Remaining": "nan"},
    ],
)
def test_hostile_rate_limit_headers_slow_the_connection_at_most_to_one_a_minute(
    headers: dict[str, str],
) -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe(httpx.Headers(headers))
    assert limiter.reserve("burst") <= 61.0
    clock.advance(61.0)  # a minute, and the window's margin
    assert limiter.reserve("burst") == 0.0


class _Answers:
    """Answers every request with one scripted 429."""

    def __init__(self, policy: str, retry_after: str) -> None:
        self.policy, self.retry_after = policy, retry_after

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"retry-after": self.retry_after},
            json={"category": "RATE_LIMITS", "policyName": self.policy},
        )


async def _upsert_against(answers: _Answers, clock: FakeClock) -> tuple[Exception, HubSpotClient]:
    async with http_client_factory(transport=httpx.MockTransport(answers)) as http:
        client = HubSpotClient(
            http_client=http,
            api_root="https://api.hubapi.com",
            tokens=PrivateAppToken(SecretStr("pat")),
            limiter=_limiter(clock),
            clock=clock,
            logger=logging.getLogger("test.hubspot.client"),
            max_wait=1.0,
        )
        try:
            await client.upsert("companies", [("t1", "a.example", {})], id_property="domain")
        except Exception as error:
            return error, client
    raise AssertionError("the 429 was not raised")


@pytest.mark.parametrize("retry_after", ["1e308", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_hostile_retry_after_blocks_a_window_at_most_an_hour(retry_after: str) -> None:
    error, client = await _upsert_against(_Answers("SECONDLY", retry_after), FakeClock())
    assert isinstance(error, BackpressureError)
    assert error.retry_after == 3600.0
    assert client.limiter.peek("burst") <= 3600.0


async def test_a_hostile_retry_after_on_the_daily_limit_parks_at_most_a_day() -> None:
    error, client = await _upsert_against(_Answers("DAILY", "1e9"), FakeClock())
    assert isinstance(error, QuotaExhaustedError)
    assert error.retry_after == 25 * 3600.0
    reset_in = client.limiter.quota_reset_in()
    assert reset_in is not None
    assert reset_in <= 25 * 3600.0
