from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.webhook import WebhookConnectionConfig
from connectors.webhook.config import decode_signing_secret

S1_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _secret(size: int, *, fill: bytes = b"\x5a") -> str:
    return "whsec_" + base64.b64encode(fill * size).decode()


def _validate(allow_private_networks: bool = False, **fields: Any) -> WebhookConnectionConfig:
    data = {"url": "https://hooks.example.com/queast", "secret": S1_SECRET, **fields}
    return WebhookConnectionConfig.validate_for_connection(
        data, allow_private_networks=allow_private_networks
    )


def _error_text(caught: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(caught.value) + caught.value.json(include_input=False)


def test_a_valid_config_with_defaults() -> None:
    config = _validate()
    assert str(config.url) == "https://hooks.example.com/queast"
    assert config.timeout_seconds == 15
    assert config.rate_limit_per_second is None
    assert config.max_concurrency is None
    assert WebhookConnectionConfig.secret_field_names() == {"secret"}
    assert config.redacted()["secret"] == "**********"


@pytest.mark.parametrize("size", [24, 32, 64])
def test_secret_sizes_within_24_to_64_bytes_are_accepted(size: int) -> None:
    assert len(decode_signing_secret(_secret(size))) == size
    _validate(secret=_secret(size))


def test_unpadded_secret_is_accepted() -> None:
    padded = _secret(25)
    assert padded.endswith("=")
    _validate(secret=padded.rstrip("="))


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (S1_SECRET.removeprefix("whsec_"), "must start with 'whsec_'"),
        ("whsk_" + S1_SECRET.removeprefix("whsec_"), "must start with 'whsec_'"),
        ("whsec_not base64!!", "followed by base64"),
        (_secret(23), "24 to 64 bytes, got 23"),
        (_secret(65), "24 to 64 bytes, got 65"),
        ("whsec_", "24 to 64 bytes, got 0"),
    ],
)
def test_bad_secrets_are_refused_without_echoing_them(secret: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _validate(secret=secret)
    text = _error_text(caught)
    assert message in text
    encoded = secret.removeprefix("whsec_").removeprefix("whsk_")
    if encoded:
        assert encoded not in text


def test_http_url_needs_allow_private_networks() -> None:
    with pytest.raises(ValidationError, match="must use https"):
        _validate(url="http://localhost:8080/hook")
    assert _validate(url="http://localhost:8080/hook", allow_private_networks=True)


def test_credentials_in_the_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        _validate(url="https://admin:hunter2@hooks.example.com/")
    text = _error_text(caught)
    assert "must not contain credentials" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "ftp://hooks.example.com/"},
        {"timeout_seconds": 31},
        {"timeout_seconds": 0},
        {"rate_limit_per_second": 0},
        {"max_concurrency": 0},
        {"unknown": True},
    ],
)
def test_out_of_range_settings_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _validate(**fields)
