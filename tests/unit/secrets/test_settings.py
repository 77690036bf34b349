from __future__ import annotations

import pydantic
import pytest

from processors.secrets import KeyRingError, SecretsSettings
from processors.secrets.keyring import DEVELOPMENT_KEY_B64
from processors.secrets.settings import DEVELOPMENT_KEYS_VALUE

from .conftest import BINDING, KEY1_B64, KEY2_B64, PLAINTEXT, assert_no_material


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QI_SECRETS_KEYS", raising=False)


def test_default_is_the_flagged_development_key() -> None:
    settings = SecretsSettings()
    assert settings.keys.get_secret_value() == DEVELOPMENT_KEYS_VALUE
    assert f"dev:{DEVELOPMENT_KEY_B64}" == DEVELOPMENT_KEYS_VALUE
    assert settings.key_ring.newest_key_id == "dev"
    assert settings.is_development_key


def test_reads_env_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", f"k1:{KEY1_B64},k2:{KEY2_B64}")
    settings = SecretsSettings()
    assert settings.key_ring.key_ids == ("k1", "k2")
    assert settings.key_ring.newest_key_id == "k2"
    assert not settings.is_development_key


def test_development_key_kept_for_decryption_is_still_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", f"{DEVELOPMENT_KEYS_VALUE},k1:{KEY1_B64}")
    assert SecretsSettings().is_development_key


def test_invalid_env_fails_at_construction_without_material(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", f"k1:{KEY1_B64},k1:{KEY2_B64}")
    with pytest.raises(KeyRingError, match="duplicate key id k1") as excinfo:
        SecretsSettings()
    assert_no_material(str(excinfo.value))


def test_secret_box_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", f"k1:{KEY1_B64}")
    box = SecretsSettings().secret_box()
    token = box.encrypt(PLAINTEXT, **BINDING)
    assert box.decrypt(token, **BINDING) == PLAINTEXT


def test_repr_str_and_dump_hide_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", f"k1:{KEY1_B64},k2:{KEY2_B64}")
    settings = SecretsSettings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert_no_material(text)
    assert_no_material(repr(settings.secret_box()))


def test_frozen_and_assignment_error_hides_input() -> None:
    settings = SecretsSettings()
    with pytest.raises(pydantic.ValidationError) as excinfo:
        settings.keys = pydantic.SecretStr(f"k1:{KEY1_B64}")  # type: ignore[misc]
    assert_no_material(str(excinfo.value))


def test_unknown_init_field_rejected_without_echo() -> None:
    with pytest.raises(pydantic.ValidationError) as excinfo:
        SecretsSettings(key=f"k1:{KEY1_B64}")  # type: ignore[call-arg]
    assert_no_material(str(excinfo.value))
