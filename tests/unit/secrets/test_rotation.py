from __future__ import annotations

import pytest

from processors.secrets import EncryptedSecret, KeyRing, SecretBox, SecretDecryptionError

from .conftest import BINDING, PLAINTEXT, assert_no_material


def test_rotation_k1_to_k2(ring_k1: KeyRing, ring_k1_k2: KeyRing, ring_k2: KeyRing) -> None:
    old_token = SecretBox(ring_k1).encrypt(PLAINTEXT, **BINDING)
    assert EncryptedSecret.parse(old_token).key_id == "k1"

    rotating = SecretBox(ring_k1_k2)
    assert rotating.decrypt(old_token, **BINDING) == PLAINTEXT
    assert rotating.needs_rewrap(old_token)
    new_token = rotating.rewrap(old_token, **BINDING)
    assert new_token != old_token
    assert EncryptedSecret.parse(new_token).key_id == "k2"
    assert not rotating.needs_rewrap(new_token)
    assert rotating.decrypt(new_token, **BINDING) == PLAINTEXT
    assert_no_material(new_token)

    retired = SecretBox(ring_k2)  # k1 dropped after the rotation
    assert retired.decrypt(new_token, **BINDING) == PLAINTEXT
    with pytest.raises(SecretDecryptionError, match=r"^unknown key id k1$"):
        retired.decrypt(old_token, **BINDING)


def test_rewrap_of_newest_token_returns_it_unchanged(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, **BINDING)
    assert not box.needs_rewrap(token)
    assert box.rewrap(token, **BINDING) is token


def test_rewrap_keeps_the_binding(ring_k1: KeyRing, box: SecretBox) -> None:
    new_token = box.rewrap(SecretBox(ring_k1).encrypt(PLAINTEXT, **BINDING), **BINDING)
    with pytest.raises(SecretDecryptionError, match="authentication failed"):
        box.decrypt(new_token, **(BINDING | {"tenant_id": "tenant-2"}))


@pytest.mark.parametrize("use_newest", [False, True])
def test_rewrap_authenticates_even_when_already_newest(
    ring_k1: KeyRing, box: SecretBox, use_newest: bool
) -> None:
    source = box if use_newest else SecretBox(ring_k1)
    token = source.encrypt(PLAINTEXT, **BINDING)
    with pytest.raises(SecretDecryptionError, match="authentication failed") as excinfo:
        box.rewrap(token, **(BINDING | {"connection_id": "conn-2"}))
    assert_no_material(str(excinfo.value))


def test_rewrap_and_needs_rewrap_reject_unknown_key(ring_k1: KeyRing, ring_k2: KeyRing) -> None:
    token = SecretBox(ring_k1).encrypt(PLAINTEXT, **BINDING)
    box = SecretBox(ring_k2)
    with pytest.raises(SecretDecryptionError, match=r"^unknown key id k1$"):
        box.needs_rewrap(token)
    with pytest.raises(SecretDecryptionError, match=r"^unknown key id k1$"):
        box.rewrap(token, **BINDING)


def test_needs_rewrap_rejects_malformed(box: SecretBox) -> None:
    with pytest.raises(SecretDecryptionError, match="malformed token") as excinfo:
        box.needs_rewrap(PLAINTEXT)
    assert_no_material(str(excinfo.value))
