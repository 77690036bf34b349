"""HubSpot connection settings: auth union, base URL policy, tier limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import RateLimit
from connectors.hubspot import HubSpotConnectionConfig, HubSpotOAuth, HubSpotPrivateApp, HubSpotTier
from connectors.hubspot.config import limits_for

PRIVATE: dict[str, Any] = {"type": "private_app", "token": "pat-na1-secret-token"}
OAUTH: dict[str, Any] = {
    "type": "oauth",
    "client_id": "client-1",
    "client_secret": "client-secret-value",
    "refresh_token": "refresh-secret-value",
}


def _config(*, allow_private_networks: bool = False, **fields: Any) -> HubSpotConnectionConfig:
    return HubSpotConnectionConfig.validate_for_connection(
        {"auth": PRIVATE, **fields}, allow_private_networks=allow_private_networks
    )


def test_defaults() -> None:
    config = _config()
    assert isinstance(config.auth, HubSpotPrivateApp)
    assert config.api_root == "https://api.hubapi.com"
    assert config.queast_id_property == "queast_id"
    assert config.note_id_property is None
    assert config.search_rate_per_second == 5
    assert config.effective_tier is HubSpotTier.FREE_STARTER


def test_oauth_auth_is_chosen_by_type_and_implies_the_oauth_app_tier() -> None:
    config = _config(auth={**OAUTH, "access_token": "at-1", "expires_at": 1_700_000_000})
    assert isinstance(config.auth, HubSpotOAuth)
    assert config.auth.access_token == SecretStr("at-1")
    assert config.effective_tier is HubSpotTier.OAUTH_APP


def test_secrets_are_redacted_and_never_echoed_by_validation() -> None:
    config = _config(auth={**OAUTH, "access_token": "at-secret"})
    shown = str(config.redacted())
    for secret in ("client-secret-value", "refresh-secret-value", "at-secret"):
        assert secret not in shown
        assert secret not in repr(config)
    with pytest.raises(ValidationError) as info:
        _config(auth={**OAUTH, "client_secret": 42})
    assert "42" not in str(info.value)


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "api_key", "token": "x"},
        {"type": "private_app"},
        {"type": "private_app", "token": "  "},
        {"type": "oauth", "client_id": "c", "client_secret": "s"},
    ],
)
def test_bad_auth_is_refused(auth: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _config(auth=auth)


def test_plain_http_base_url_needs_the_private_network_flag() -> None:
    with pytest.raises(ValidationError, match="https"):
        _config(base_url="http://127.0.0.1:8910")
    config = _config(base_url="http://127.0.0.1:8910/", allow_private_networks=True)
    assert config.api_root == "http://127.0.0.1:8910"


@pytest.mark.parametrize(
    "url", ["https://user:pw@api.hubapi.com", "https://api.hubapi.com/?hapikey=x", "ftp://x"]
)
def test_odd_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        _config(base_url=url)


@pytest.mark.parametrize("name", ["Queast_Id", "1abc", "queast-id", ""])
def test_property_names_must_be_internal_names(name: str) -> None:
    with pytest.raises(ValidationError):
        _config(queast_id_property=name)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        _config(portal_id=123)


@pytest.mark.parametrize(
    ("tier", "burst", "daily"),
    [
        ("free_starter", 100, 250_000),
        ("professional_enterprise", 190, 625_000),
        ("oauth_app", 110, None),
    ],
)
def test_tier_limits(tier: str, burst: int, daily: int | None) -> None:
    limits = limits_for(_config(tier=tier))
    # a bucket of three requests spaces requests out; the window alone allows a burst
    assert limits.burst == RateLimit(rate=burst, per_seconds=10, burst=3)
    assert limits.search == RateLimit(rate=5, per_seconds=1)
    assert limits.daily == daily


def test_connection_rate_override_replaces_the_tier_rate() -> None:
    limits = limits_for(_config(rate_limit_per_second=4, search_rate_per_second=2))
    assert limits.burst == RateLimit(rate=40, per_seconds=10, burst=3)
    assert limits.search == RateLimit(rate=2, per_seconds=1)
    slow = limits_for(_config(rate_limit_per_second=0.05))
    assert slow.burst == RateLimit(rate=0.5, per_seconds=10, burst=3)
