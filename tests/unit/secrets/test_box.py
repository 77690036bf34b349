from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.secrets import (
    EncryptedSecret,
    KeyRing,
    SecretBindingError,
    SecretBox,
    SecretDecryptionError,
    SecretEncryptionError,
    SecretPurpose,
)
from processors.secrets.envelope import MAX_PLAINTEXT_BYTES

from .conftest import BINDING, KEY1_B64, KEY2_B64, PLAINTEXT, assert_no_material

AUTH_FAILED = "authentication failed"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "plaintext",
    [PLAINTEXT, "", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "ünïcödé ✓ 🔑", "x" * 10_000],
)
def test_round_trip(box: SecretBox, plaintext: str) -> None:
    token = box.encrypt(plaintext, **BINDING)
    assert box.decrypt(token, **BINDING) == plaintext


def test_token_shape_and_newest_key(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, **BINDING)
    prefix, version, key_id, nonce, _ciphertext = token.split(":")
    assert (prefix, version, key_id) == ("qi-enc", "v1", "k2")
    assert len(nonce) == 16  # 12 bytes
    assert token.isascii()
    assert_no_material(token)


def test_purpose_enum_and_equal_string_are_interchangeable(box: SecretBox) -> None:
    token = box.encrypt(
        PLAINTEXT, tenant_id="t", connection_id="c", purpose=SecretPurpose.OAUTH_REFRESH_TOKEN
    )
    assert box.decrypt(token, tenant_id="t", connection_id="c", purpose="oauth_refresh_token")


def test_nonces_differ_between_encryptions_of_same_plaintext(box: SecretBox) -> None:
    tokens = {box.encrypt(PLAINTEXT, **BINDING) for _ in range(50)}
    assert len(tokens) == 50
    nonces = {EncryptedSecret.parse(token).nonce for token in tokens}
    assert len(nonces) == 50


@pytest.mark.parametrize(
    "other",
    [
        {"tenant_id": "tenant-2"},
        {"connection_id": "conn-2"},
        {"purpose": "webhook_signing_secret"},
        {"tenant_id": "Tenant-1"},
        {"tenant_id": "tenant-1 "},
    ],
)
def test_wrong_binding_fails(box: SecretBox, other: dict[str, str]) -> None:
    token = box.encrypt(PLAINTEXT, **BINDING)
    with pytest.raises(SecretDecryptionError, match=AUTH_FAILED) as excinfo:
        box.decrypt(token, **(BINDING | other))
    assert_no_material(str(excinfo.value), token)


@pytest.mark.parametrize(
    ("encrypt_with", "decrypt_with"),
    [
        (("a", "bc", "p"), ("ab", "c", "p")),
        (("ab", "c", "p"), ("a", "bc", "p")),
        (("t", "a", "bc"), ("t", "ab", "c")),
        (("t\x00", "c", "p"), ("t", "\x00c", "p")),
    ],
)
def test_field_boundaries_are_unambiguous(
    box: SecretBox, encrypt_with: tuple[str, str, str], decrypt_with: tuple[str, str, str]
) -> None:
    def binding(values: tuple[str, str, str]) -> dict[str, str]:
        return dict(zip(("tenant_id", "connection_id", "purpose"), values, strict=True))

    token = box.encrypt(PLAINTEXT, **binding(encrypt_with))
    assert box.decrypt(token, **binding(encrypt_with)) == PLAINTEXT
    with pytest.raises(SecretDecryptionError, match=AUTH_FAILED):
        box.decrypt(token, **binding(decrypt_with))


def _retoken(secret: EncryptedSecret, *, nonce: bytes, ciphertext: bytes, key_id: str) -> str:
    return f"qi-enc:v1:{key_id}:{b64(nonce)}:{b64(ciphertext)}"


def test_tampering_any_byte_of_nonce_or_ciphertext_fails(box: SecretBox) -> None:
    token = box.encrypt("short secret", **BINDING)
    secret = EncryptedSecret.parse(token)
    nonce, ciphertext = bytearray(secret.nonce), bytearray(secret.ciphertext)
    tampered: list[str] = []
    for index in range(len(nonce)):
        for bit in (0x01, 0x80):
            changed = bytearray(nonce)
            changed[index] ^= bit
            tampered.append(
                _retoken(secret, nonce=bytes(changed), ciphertext=secret.ciphertext, key_id="k2")
            )
    for index in range(len(ciphertext)):
        for bit in (0x01, 0x80):
            changed = bytearray(ciphertext)
            changed[index] ^= bit
            tampered.append(
                _retoken(secret, nonce=secret.nonce, ciphertext=bytes(changed), key_id="k2")
            )
    assert len(tampered) == 2 * (12 + len(ciphertext))
    for bad in tampered:
        with pytest.raises(SecretDecryptionError, match=AUTH_FAILED):
            box.decrypt(bad, **BINDING)


def test_truncated_or_extended_ciphertext_fails(box: SecretBox) -> None:
    secret = EncryptedSecret.parse(box.encrypt(PLAINTEXT, **BINDING))
    for ciphertext in (secret.ciphertext[:-1], secret.ciphertext + b"\x00", secret.ciphertext[1:]):
        bad = _retoken(secret, nonce=secret.nonce, ciphertext=ciphertext, key_id="k2")
        with pytest.raises(SecretDecryptionError, match=AUTH_FAILED):
            box.decrypt(bad, **BINDING)


def test_relabelling_key_id_fails() -> None:
    # Same key material under two ids would be rejected by the ring, so relabel k2 -> k1:
    ring = KeyRing.from_env_value(f"k1:{KEY1_B64},k2:{KEY2_B64}")
    box = SecretBox(ring)
    secret = EncryptedSecret.parse(box.encrypt(PLAINTEXT, **BINDING))
    relabelled = _retoken(secret, nonce=secret.nonce, ciphertext=secret.ciphertext, key_id="k1")
    with pytest.raises(SecretDecryptionError, match=AUTH_FAILED):
        box.decrypt(relabelled, **BINDING)


def test_unknown_key_id(box: SecretBox) -> None:
    secret = EncryptedSecret.parse(box.encrypt(PLAINTEXT, **BINDING))
    token = _retoken(secret, nonce=secret.nonce, ciphertext=secret.ciphertext, key_id="k9")
    with pytest.raises(SecretDecryptionError) as excinfo:
        box.decrypt(token, **BINDING)
    assert str(excinfo.value) == "unknown key id k9"


def test_plaintext_passed_as_token_is_not_echoed(box: SecretBox) -> None:
    for value in (PLAINTEXT, f"qi-enc:v1:{PLAINTEXT}", f"qi-enc:v1:k1:{PLAINTEXT}:{PLAINTEXT}"):
        with pytest.raises(SecretDecryptionError, match="malformed token") as excinfo:
            box.decrypt(value, **BINDING)
        assert_no_material(str(excinfo.value))


@pytest.mark.parametrize("field", ["tenant_id", "connection_id", "purpose"])
def test_empty_binding_field_is_a_binding_error(box: SecretBox, field: str) -> None:
    token = box.encrypt(PLAINTEXT, **BINDING)
    with pytest.raises(SecretBindingError, match=f"{field} must not be empty"):
        box.encrypt(PLAINTEXT, **(BINDING | {field: ""}))
    with pytest.raises(SecretBindingError, match=f"{field} must not be empty"):
        box.decrypt(token, **(BINDING | {field: ""}))


def test_binding_errors_do_not_echo_values(box: SecretBox) -> None:
    with pytest.raises(SecretBindingError, match="tenant_id is not encodable") as excinfo:
        box.encrypt(PLAINTEXT, **(BINDING | {"tenant_id": "bad\ud800tenant"}))
    assert "bad" not in str(excinfo.value)
    with pytest.raises(SecretBindingError, match="connection_id is 1025 bytes") as excinfo:
        box.encrypt(PLAINTEXT, **(BINDING | {"connection_id": "c" * 1025}))
    assert "ccc" not in str(excinfo.value)


def test_unencodable_plaintext(box: SecretBox) -> None:
    with pytest.raises(SecretEncryptionError, match="not encodable as UTF-8") as excinfo:
        box.encrypt(PLAINTEXT + "\ud800", **BINDING)
    assert_no_material(str(excinfo.value))


def test_plaintext_size_limit(box: SecretBox) -> None:
    token = box.encrypt("x" * MAX_PLAINTEXT_BYTES, **BINDING)
    assert box.decrypt(token, **BINDING) == "x" * MAX_PLAINTEXT_BYTES
    with pytest.raises(SecretEncryptionError, match="the limit is 65536"):
        box.encrypt("x" * (MAX_PLAINTEXT_BYTES + 1), **BINDING)


def test_repr_has_no_key_material(box: SecretBox) -> None:
    assert repr(box) == "SecretBox(KeyRing(key_ids=('k1', 'k2'), active='k2'))"


# --- properties ---------------------------------------------------------------------------

_ring = KeyRing.from_env_value(f"k1:{KEY1_B64},k2:{KEY2_B64}")
_box = SecretBox(_ring)
_valid_token = _box.encrypt(PLAINTEXT, **BINDING)
_id_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


def _assert_only_decryption_error(token: str) -> None:
    try:
        _box.decrypt(token, **BINDING)
    except SecretDecryptionError as exc:
        assert_no_material(str(exc))
    else:
        pytest.fail("decrypt accepted a token it did not produce")


@given(st.text())
def test_arbitrary_strings_only_raise_decryption_error(token: str) -> None:
    _assert_only_decryption_error(token)


@given(st.text(alphabet="qienc:v1k2-_ABCxyz0189=+/", max_size=80))
def test_token_like_strings_only_raise_decryption_error(token: str) -> None:
    _assert_only_decryption_error(token)


@given(
    st.sampled_from(["k1", "k2", "k9", "", "K1"]),
    st.binary(max_size=20),
    st.binary(max_size=60),
)
def test_well_formed_forgeries_only_raise_decryption_error(
    key_id: str, nonce: bytes, ciphertext: bytes
) -> None:
    _assert_only_decryption_error(f"qi-enc:v1:{key_id}:{b64(nonce)}:{b64(ciphertext)}")


@given(st.integers(min_value=0, max_value=len(_valid_token) - 1), st.characters(codec="utf-8"))
def test_any_single_character_change_is_rejected(index: int, char: str) -> None:
    token = _valid_token[:index] + char + _valid_token[index + 1 :]
    if token == _valid_token:
        return
    _assert_only_decryption_error(token)


@settings(max_examples=50)
@given(st.text(), _id_text, _id_text, _id_text)
def test_round_trip_property(
    plaintext: str, tenant_id: str, connection_id: str, purpose: str
) -> None:
    binding = {"tenant_id": tenant_id, "connection_id": connection_id, "purpose": purpose}
    token = _box.encrypt(plaintext, **binding)
    assert _box.decrypt(token, **binding) == plaintext
