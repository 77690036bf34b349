from __future__ import annotations

import pytest

from connectors.base import (
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    PermanentError,
    TransientError,
)


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


@pytest.mark.parametrize("retry_after", [-1.0, float("nan")])
def test_invalid_retry_after_is_refused(retry_after: float) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        TransientError(retry_after=retry_after)
