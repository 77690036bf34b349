"""The kit's attempt timing and logging, the midnight helper and the header reader."""

from __future__ import annotations

import logging

import httpx
import pytest

from connectors.base.attempts import Attempt, ms_since, seconds_until_midnight_utc
from connectors.base.errors import PermanentError
from connectors.base.http import header_number
from tests.unit.connectors.fakes import FakeClock


def test_ms_since_rounds_to_a_tenth_of_a_millisecond() -> None:
    clock = FakeClock(monotonic=10.0)
    clock.advance(0.25004)
    assert ms_since(10.0, clock) == 250.0


@pytest.mark.parametrize(
    ("now", "expected"),
    [(1_700_000_000.0, 6_400.0), (1_699_920_000.0, 86_400.0), (1_699_919_999.5, 0.5)],
)
def test_seconds_until_midnight_utc(now: float, expected: float) -> None:
    assert seconds_until_midnight_utc(now) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "minimum", "expected"),
    [
        (None, 0.0, None),
        ("12", 0.0, 12.0),
        (" 7.5 ", 0.0, 7.5),
        ("garbage", 0.0, None),
        ("nan", 0.0, None),
        ("-1", 0.0, None),
        ("0.5", 1.0, None),
        ("inf", 0.0, 100.0),
        ("1e308", 0.0, 100.0),
    ],
)
def test_header_number_bounds_a_partner_number(
    raw: str | None, minimum: float, expected: float | None
) -> None:
    headers = httpx.Headers({} if raw is None else {"x-limit": raw})
    assert header_number(headers, "x-limit", minimum=minimum, maximum=100.0) == expected


def test_attempt_logs_and_reports_a_delivery_from_its_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    logger = logging.getLogger("test.attempts")
    attempt = Attempt(clock, logger, {"delivery_id": "d-1"})
    clock.advance(5)  # a rate-limit wait before the attempt itself
    attempt.restart()
    clock.advance(0.125)
    with caplog.at_level(logging.INFO, logger="test.attempts"):
        result = attempt.delivered("d-1", 201, partner_object_id="42")
    assert (result.delivery_id, result.status_code, result.duration_ms) == ("d-1", 201, 125.0)
    assert result.partner_object_id == "42"
    (entry,) = caplog.records
    assert entry.msg == "delivery.attempt.delivered"
    assert entry.__dict__["partner_object_id"] == "42"
    assert entry.__dict__["duration_ms"] == 125.0


def test_attempt_logs_a_failure_with_the_errors_safe_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    attempt = Attempt(clock, logging.getLogger("test.attempts"), {"delivery_id": "d-2"})
    clock.advance(0.5)
    with caplog.at_level(logging.WARNING, logger="test.attempts"):
        attempt.failed(PermanentError("rejected", partner="p", status_code=400))
    (entry,) = caplog.records
    assert entry.msg == "delivery.attempt.failed"
    assert (entry.__dict__["error_class"], entry.__dict__["status_code"]) == ("PermanentError", 400)
    assert entry.__dict__["duration_ms"] == 500.0
