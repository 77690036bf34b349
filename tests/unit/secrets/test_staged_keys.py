"""Staged keys: a key can be added decrypt-only before it becomes the encryption key."""

from __future__ import annotations

import pytest

from processors.secrets import EncryptedSecret, KeyRing, KeyRingError, SecretBox, SecretsSettings

from .conftest import BINDING, KEY1_B64, KEY2_B64, PLAINTEXT, assert_no_material

RING = f"k1:{KEY1_B64},k2:{KEY2_B64}"


def test_active_key_id_names_the_encryption_key_and_stages_the_rest() -> None:
    ring = KeyRing.from_env_value(RING, active_key_id="k1")
    assert ring.active_key_id == "k1"
    assert ring.newest_key_id == "k1"
    assert ring.staged_key_ids == ("k2",)
    assert repr(ring) == "KeyRing(key_ids=('k1', 'k2'), active='k1')"
    default = KeyRing.from_env_value(RING)
    assert default.active_key_id == "k2"
    assert default.staged_key_ids == ()


def test_staged_key_decrypts_but_never_encrypts() -> None:
    staged = SecretBox(KeyRing.from_env_value(RING, active_key_id="k1"))
    token = staged.encrypt(PLAINTEXT, **BINDING)
    assert EncryptedSecret.parse(token).key_id == "k1"
    sealed_by_k2 = SecretBox(KeyRing.from_env_value(f"k2:{KEY2_B64}")).encrypt(PLAINTEXT, **BINDING)
    assert staged.decrypt(sealed_by_k2, **BINDING) == PLAINTEXT
    assert not staged.needs_rewrap(token)
    assert staged.needs_rewrap(sealed_by_k2)
    rewrapped = staged.rewrap(sealed_by_k2, **BINDING)
    assert EncryptedSecret.parse(rewrapped).key_id == "k1"


def test_rolling_deploy_old_and_new_pods_read_each_other() -> None:
    """Stage (k1 active, k2 staged), then activate k2: both configurations run side by side."""
    before = SecretBox(KeyRing.from_env_value(f"k1:{KEY1_B64}"))
    staged = SecretBox(KeyRing.from_env_value(RING, active_key_id="k1"))
    activated = SecretBox(KeyRing.from_env_value(RING))

    # deploy 1: pods without k2 and pods with k2 staged both seal with k1
    for writer, reader in ((before, staged), (staged, before)):
        assert reader.decrypt(writer.encrypt(PLAINTEXT, **BINDING), **BINDING) == PLAINTEXT
    # deploy 2: pods with k2 active and pods with k2 staged read each other
    for writer, reader in ((activated, staged), (staged, activated)):
        assert reader.decrypt(writer.encrypt(PLAINTEXT, **BINDING), **BINDING) == PLAINTEXT
    assert EncryptedSecret.parse(activated.encrypt(PLAINTEXT, **BINDING)).key_id == "k2"


def test_unknown_active_key_id_is_refused_without_material() -> None:
    with pytest.raises(KeyRingError, match="active key id k3 is not one") as excinfo:
        KeyRing.from_env_value(RING, active_key_id="k3")
    assert_no_material(str(excinfo.value))
    with pytest.raises(KeyRingError, match=r"\(invalid id\)") as invalid:
        KeyRing.from_env_value(RING, active_key_id=KEY1_B64)
    assert_no_material(str(invalid.value))


def test_settings_read_the_active_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_SECRETS_KEYS", RING)
    monkeypatch.setenv("QI_SECRETS_ACTIVE_KEY_ID", "k1")
    settings = SecretsSettings()
    assert settings.key_ring.active_key_id == "k1"
    assert settings.key_ring.staged_key_ids == ("k2",)
    monkeypatch.setenv("QI_SECRETS_ACTIVE_KEY_ID", "")
    assert SecretsSettings().key_ring.active_key_id == "k2"
    monkeypatch.setenv("QI_SECRETS_ACTIVE_KEY_ID", "nope")
    with pytest.raises(KeyRingError, match="active key id nope"):
        SecretsSettings()
