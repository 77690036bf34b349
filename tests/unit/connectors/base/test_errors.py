from __future__ import annotations

import pytest

from connectors.base import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
    bounded_wait,
)
from connectors.base.errors import MAX_QUOTA_RESET_SECONDS


def test_error_tree() -> None:
    assert issubclass(TransientError, ConnectorError)
    assert issubclass(BackpressureError, TransientError)
    assert issubclass(PermanentError, ConnectorError)
    assert issubclass(EndpointGoneError, PermanentError)
    assert issubclass(AuthenticationError, ConnectorError)
    assert not issubclass(AuthenticationError, (TransientError, PermanentError))


def test_context_is_kept_and_logged() -> None:
    error = TransientError(
        "server error", partner="hubspot", endpoint="/crm/v3", status_code=503, retry_after=2
    )
    assert error.retry_after == 2.0
    assert error.log_fields() == {
        "error_class": "TransientError",
        "reason": "server error",
        "partner": "hubspot",
        "endpoint": "/crm/v3",
        "status_code": 503,
        "retry_after": 2.0,
    }
    assert str(error) == (
        "server error (partner=hubspot, endpoint=/crm/v3, status_code=503, retry_after=2.0)"
    )


def test_default_reason_per_class() -> None:
    assert PermanentError().reason == "permanent failure"
    assert BackpressureError(retry_after=1).reason == "rate limited"
    assert str(EndpointGoneError()) == "endpoint gone"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://user:pw@api.example.com/v1/x?token=abc#frag", "https://api.example.com/v1/x"),
        ("api.example.com/hooks?key=1", "api.example.com/hooks"),
        ("token@hooks.example.com", "hooks.example.com"),
        ("/crm/v3/objects", "/crm/v3/objects"),
    ],
)
def test_endpoint_loses_credentials_and_query(endpoint: str, expected: str) -> None:
    assert PermanentError(endpoint=endpoint).endpoint == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (-1.0, 0.0),
        (float("nan"), 0.0),
        (float("-inf"), 0.0),
        (float("inf"), MAX_RETRY_AFTER_SECONDS),
        (1e308, MAX_RETRY_AFTER_SECONDS),
        (1e9, MAX_RETRY_AFTER_SECONDS),
        (10**400, MAX_RETRY_AFTER_SECONDS),
        (12.5, 12.5),
        (None, None),
    ],
)
def test_a_wait_hint_is_bounded_never_refused(
    retry_after: float | None, expected: float | None
) -> None:
    assert TransientError(retry_after=retry_after).retry_after == expected
    if retry_after is not None:
        assert BackpressureError(retry_after=retry_after).retry_after == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (float("nan"), 0.0),
        (-3.0, 0.0),
        (1e308, MAX_QUOTA_RESET_SECONDS),
        (float("inf"), MAX_QUOTA_RESET_SECONDS),
        (20 * 3600.0, 20 * 3600.0),
    ],
)
def test_a_quota_reset_is_bounded_by_a_day(retry_after: float, expected: float) -> None:
    assert QuotaExhaustedError(retry_after=retry_after).retry_after == expected


def test_bounded_wait() -> None:
    assert bounded_wait(None, maximum=5.0) is None
    assert bounded_wait(7.0, maximum=5.0) == 5.0
    assert bounded_wait(0.25, maximum=5.0) == 0.25
