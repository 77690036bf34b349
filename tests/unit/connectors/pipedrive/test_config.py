from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.pipedrive import PipedriveConnectionConfig, PipedrivePlan
from connectors.pipedrive.config import PipedriveOAuth, burst_per_window
from tests.unit.connectors.pipedrive.fakes import API_TOKEN, DOMAIN_KEY, api_token_config


def _oauth(**overrides: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "oauth",
        "client_id": "cid",
        "client_secret": "client-secret-value",
        "refresh_token": "refresh-token-value",
        "api_domain": "https://acme.pipedrive.com",
    }
    auth.update(overrides)
    return api_token_config(auth=auth)


def _validate(settings: dict[str, Any], *, private: bool = False) -> PipedriveConnectionConfig:
    return PipedriveConnectionConfig.validate_for_connection(
        settings, allow_private_networks=private
    )


def test_api_token_defaults() -> None:
    config = _validate(api_token_config())
    assert config.auth_type == "api_token"
    assert config.plan is PipedrivePlan.LITE
    assert config.api_base_url() == "https://api.pipedrive.com"
    assert config.effective_daily_budget == 30_000
    assert config.burst_per_window == 20


def test_oauth_calls_go_to_the_api_domain() -> None:
    config = _validate(_oauth())
    assert isinstance(config.auth, PipedriveOAuth)
    assert config.api_base_url() == "https://acme.pipedrive.com"
    assert config.api_base_url(oauth_api_domain="https://other.pipedrive.com") == (
        "https://other.pipedrive.com"
    )
    assert str(config.auth.token_url) == "https://oauth.pipedrive.com/oauth/token"


def test_an_explicit_base_url_wins() -> None:
    config = _validate({**_oauth(), "base_url": "https://proxy.pipedrive.com/"})
    assert config.api_base_url(oauth_api_domain="https://x.pipedrive.com") == (
        "https://proxy.pipedrive.com"
    )


@pytest.mark.parametrize(
    ("plan", "api_token", "oauth", "multiplier"),
    [
        ("lite", 20, 80, 1),
        ("growth", 40, 160, 2),
        ("premium", 100, 400, 5),
        ("ultimate", 120, 480, 7),
    ],
)
def test_plans_size_the_burst_and_the_budget(
    plan: str, api_token: int, oauth: int, multiplier: int
) -> None:
    assert burst_per_window(PipedrivePlan(plan), "api_token") == api_token
    assert burst_per_window(PipedrivePlan(plan), "oauth") == oauth
    config = _validate(api_token_config(plan=plan))
    assert config.effective_daily_budget == 30_000 * multiplier
    assert _validate({**_oauth(), "plan": plan}).burst_per_window == oauth


def test_the_daily_budget_is_configurable() -> None:
    assert _validate(api_token_config(daily_budget=1234)).effective_daily_budget == 1234
    with pytest.raises(ValidationError):
        _validate(api_token_config(daily_budget=0))


def test_the_domain_field_key_is_required() -> None:
    settings = api_token_config()
    del settings["domain_field_key"]
    with pytest.raises(ValidationError, match="domain_field_key"):
        _validate(settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.pipedrive.com",
        "https://pipedrive.com.evil.example",
        "https://evil.example",
        "https://user:pw@api.pipedrive.com",
        "https://api.pipedrive.com/?token=x",
    ],
)
def test_urls_must_be_https_on_pipedrive(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        _validate(api_token_config(base_url=url))
    with pytest.raises(ValidationError, match="api_domain"):
        _validate(_oauth(api_domain=url))
    with pytest.raises(ValidationError, match="token_url"):
        _validate(_oauth(token_url=url))


def test_local_urls_need_the_private_network_flag() -> None:
    settings = api_token_config(base_url="http://127.0.0.1:8910")
    with pytest.raises(ValidationError):
        _validate(settings)
    assert _validate(settings, private=True).api_base_url() == "http://127.0.0.1:8910"


def test_connection_level_overrides_are_accepted() -> None:
    config = _validate(api_token_config(rate_limit_per_second=5, max_concurrency=2))
    assert config.rate_limit_per_second == 5
    assert config.max_concurrency == 2


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        _validate(api_token_config(domain="acme.example"))
    with pytest.raises(ValidationError):
        _validate(api_token_config(auth={"type": "api_token", "token": "t", "extra": 1}))


def test_secrets_are_never_echoed() -> None:
    config = _validate(_oauth())
    shown = repr(config) + str(config.redacted())
    for secret in (API_TOKEN, "client-secret-value", "refresh-token-value"):
        assert secret not in shown
    with pytest.raises(ValidationError) as caught:
        _validate(_oauth(client_secret=12345, api_domain="https://evil.example/?q=secret-in-url"))
    assert "secret-in-url" not in str(caught.value)


def test_an_unknown_plan_is_refused() -> None:
    with pytest.raises(ValidationError, match="plan"):
        _validate(api_token_config(plan="enterprise"))


def test_field_keys_are_plain_identifiers() -> None:
    with pytest.raises(ValidationError):
        _validate(api_token_config(domain_field_key="a b"))
    assert _validate(api_token_config()).domain_field_key == DOMAIN_KEY
