"""The worker and the API refuse the published development key and short HS256 secrets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from processors.cli import main
from processors.secrets import SecretsSettings
from processors.secrets.settings import DEVELOPMENT_KEYS_VALUE
from processors.settings import AuthSettings, RuntimeSettings, Settings, get_settings
from processors.startup import UnsafeSettingsError, check_startup, startup_problems

from .conftest import KEY1_B64, KEY2_B64, assert_no_material

OWN_KEYS = f"k1:{KEY1_B64}"
LONG_SECRET = "x" * 32
SHORT_SECRET = "short-hs256-secret-31-bytes-abc"


def settings_with(
    keys: str = OWN_KEYS, jwt_secret: str | None = LONG_SECRET, env: str = "production"
) -> Settings:
    return Settings(
        secrets=SecretsSettings(keys=SecretStr(keys)),
        auth=AuthSettings(jwt_secret=None if jwt_secret is None else SecretStr(jwt_secret)),
        runtime=RuntimeSettings(env=env),
    )


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The CLI reads the environment anew (its settings are cached per process)."""
    for name in ("QI_ENV", "QI_SECRETS_KEYS", "QI_SECRETS_ACTIVE_KEY_ID", "QI_AUTH_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name in ("QI_AUTH_JWKS_URL", "QI_AUTH_ISSUER", "QI_AUTH_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_own_keys_and_a_long_secret_start() -> None:
    for component in ("worker", "api"):
        assert startup_problems(settings_with(), component=component) == []
        check_startup(settings_with(), component=component)


@pytest.mark.parametrize(
    "keys",
    [
        DEVELOPMENT_KEYS_VALUE,
        f"{OWN_KEYS},{DEVELOPMENT_KEYS_VALUE}",
        f"{DEVELOPMENT_KEYS_VALUE},k2:{KEY2_B64}",
    ],
    ids=["default", "active", "kept_for_decryption"],
)
def test_development_key_is_refused_by_both(keys: str) -> None:
    for component in ("worker", "api"):
        with pytest.raises(UnsafeSettingsError, match="published development key") as excinfo:
            check_startup(settings_with(keys=keys), component=component)
        assert_no_material(str(excinfo.value))


def test_short_hs256_secret_is_refused_by_the_api_only() -> None:
    settings = settings_with(jwt_secret=SHORT_SECRET)
    with pytest.raises(UnsafeSettingsError, match="QI_AUTH_JWT_SECRET is 31 bytes") as excinfo:
        check_startup(settings, component="api")
    assert SHORT_SECRET not in str(excinfo.value)
    check_startup(settings, component="worker")  # the worker verifies no tokens
    # bytes, not characters
    check_startup(settings_with(jwt_secret="é" * 16), component="api")


def test_development_environment_allows_both(caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_with(keys=DEVELOPMENT_KEYS_VALUE, jwt_secret="dev", env="Development")
    check_startup(settings, component="api")
    check_startup(settings, component="worker")
    assert "startup.development_only_settings" in caplog.messages


@pytest.mark.parametrize("command", ["worker", "api", "demo"])
def test_cli_exits_2_with_the_development_key(
    command: str, fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "refuses to start" in err
    assert "published development key" in err
    assert "QI_ENV=development" in err


def test_cli_api_exits_2_with_a_short_secret(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("QI_SECRETS_KEYS", OWN_KEYS)
    fresh_settings.setenv("QI_AUTH_JWT_SECRET", SHORT_SECRET)
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert "QI_AUTH_JWT_SECRET is 31 bytes" in err
    assert SHORT_SECRET not in err


def test_cli_exits_2_for_jwks_without_issuer_and_audience(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("QI_SECRETS_KEYS", OWN_KEYS)
    fresh_settings.setenv("QI_AUTH_JWKS_URL", "https://idp.invalid/jwks.json")
    assert main(["api"]) == 2
    assert "QI_AUTH_ISSUER and QI_AUTH_AUDIENCE are required" in capsys.readouterr().err


def test_cli_exits_2_for_a_bad_key_ring(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("QI_SECRETS_KEYS", f"k1:{KEY1_B64[:-4]}")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "invalid QI_SECRETS_KEYS" in err
    assert_no_material(err)
