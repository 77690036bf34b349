"""Pacing and answer parsing of the HubSpot client (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import PermanentError, RateLimit, TransientError
from connectors.hubspot.client import (
    HubSpotRateLimiter,
    input_error,
    parse_batch_write,
    seconds_to_utc_midnight,
)
from connectors.hubspot.config import HubSpotLimits
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
