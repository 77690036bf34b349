from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, SecretStr, ValidationError, field_validator

from connectors.base import ConnectionConfig, StaticCredentials
from connectors.base.errors import AuthenticationError


class TokenConfig(ConnectionConfig):
    api_token: SecretStr
    refresh_token: SecretStr | None = None
    region: str = "eu"

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 10:
            msg = "api token too short"
            raise ValueError(msg)
        return value


def test_secret_field_names() -> None:
    assert TokenConfig.secret_field_names() == {"api_token", "refresh_token"}


def test_redacted_hides_secrets() -> None:
    config = TokenConfig.validate_for_connection({"api_token": "tok-1234567890"})
    assert config.redacted() == {"api_token": "**********", "refresh_token": None, "region": "eu"}
    assert "tok-1234567890" not in repr(config)


def test_config_is_frozen_and_refuses_unknown_keys() -> None:
    config = TokenConfig.validate_for_connection({"api_token": "tok-1234567890"})
    with pytest.raises(ValidationError):
        config.region = "us"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TokenConfig.validate_for_connection({"api_token": "tok-1234567890", "extra": 1})


def test_validation_errors_never_echo_input() -> None:
    with pytest.raises(ValidationError) as caught:
        TokenConfig.validate_for_connection({"api_token": "short"})
    assert "short" not in str(caught.value).replace("too short", "")
    assert "short'" not in caught.value.json(include_input=False)


async def test_static_credentials() -> None:
    credentials = StaticCredentials({"api_token": SecretStr("x")})
    assert (await credentials.get("api_token")).get_secret_value() == "x"
    with pytest.raises(AuthenticationError, match="not configured"):
        await credentials.get("refresh_token")


class _OAuth(BaseModel):
    type: Literal["oauth"]
    client_secret: SecretStr
    refresh_token: SecretStr | None = None


class _Key(BaseModel):
    type: Literal["key"]
    signing_key: SecretStr


class NestedConfig(ConnectionConfig):
    auth: _OAuth | _Key
    fallbacks: tuple[_Key, ...] = ()
    password: SecretStr | None = None
    label: str = ""


def test_secret_field_names_include_the_fields_of_nested_models() -> None:
    assert NestedConfig.secret_field_names() == {
        "client_secret",
        "refresh_token",
        "signing_key",
        "password",
    }
