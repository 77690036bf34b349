from __future__ import annotations

import base64

import pydantic
import pytest

from processors.secrets import EncryptedSecret, SecretBox, SecretDecryptionError
from processors.secrets.envelope import MAX_PLAINTEXT_BYTES, MAX_TOKEN_LENGTH

from .conftest import BINDING, PLAINTEXT, assert_no_material

NONCE = bytes(range(12))
CIPHERTEXT = bytes(range(40))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


GOOD = f"qi-enc:v1:k1:{b64(NONCE)}:{b64(CIPHERTEXT)}"


def test_parse_and_format_round_trip() -> None:
    secret = EncryptedSecret.parse(GOOD)
    assert secret.key_id == "k1"
    assert secret.nonce == NONCE
    assert secret.ciphertext == CIPHERTEXT
    assert secret.to_token() == GOOD
    assert str(secret) == GOOD


def test_pydantic_serialises_to_and_validates_from_token_string() -> None:
    class Stored(pydantic.BaseModel):
        secret: EncryptedSecret

    secret = EncryptedSecret.parse(GOOD)
    assert pydantic.TypeAdapter(EncryptedSecret).dump_python(secret) == GOOD
    assert secret.model_dump_json() == f'"{GOOD}"'
    assert EncryptedSecret.model_validate(GOOD) == secret
    stored = Stored(secret=secret)
    assert stored.model_dump_json() == f'{{"secret":"{GOOD}"}}'
    assert Stored.model_validate_json(stored.model_dump_json()) == stored


def test_model_validation_error_hides_input() -> None:
    with pytest.raises(pydantic.ValidationError) as excinfo:
        EncryptedSecret.model_validate(PLAINTEXT)
    assert "malformed token" in str(excinfo.value)
    assert_no_material(str(excinfo.value))


def test_frozen() -> None:
    secret = EncryptedSecret.parse(GOOD)
    with pytest.raises(pydantic.ValidationError):
        secret.key_id = "k2"  # type: ignore[misc]


def test_repr_shows_key_id_only() -> None:
    secret = EncryptedSecret.parse(GOOD)
    assert repr(secret) == "EncryptedSecret(key_id='k1')"


def test_repr_of_real_token_never_contains_plaintext(box: SecretBox) -> None:
    token = box.encrypt(PLAINTEXT, **BINDING)
    secret = EncryptedSecret.parse(token)
    for text in (repr(secret), str(secret), secret.model_dump_json(), token):
        assert_no_material(text)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "expected 5 ':'-separated fields"),
        (PLAINTEXT, "expected 5 ':'-separated fields"),
        (GOOD + ":", "expected 5 ':'-separated fields"),
        (GOOD.replace("qi-enc", "qi-env"), "prefix is not 'qi-enc'"),
        (GOOD.replace(":v1:", ":v2:"), "unsupported format version"),
        (GOOD.replace(":k1:", "::"), "invalid key id"),
        (GOOD.replace(":k1:", ":k/1:"), "invalid key id"),
        (f"qi-enc:v1:k1:{b64(NONCE)}=:{b64(CIPHERTEXT)}", "nonce is not canonical base64"),
        (f"qi-enc:v1:k1:{b64(NONCE)}A:{b64(CIPHERTEXT)}", "nonce is not canonical base64"),
        (f"qi-enc:v1:k1:{b64(NONCE)[:-1]}:{b64(CIPHERTEXT)}", "nonce must be 12 bytes"),
        (f"qi-enc:v1:k1:{b64(NONCE[:8])}:{b64(CIPHERTEXT)}", "nonce must be 12 bytes"),
        (f"qi-enc:v1:k1:{b64(NONCE + b'1234')}:{b64(CIPHERTEXT)}", "nonce must be 12 bytes"),
        (f"qi-enc:v1:k1:{b64(NONCE)}:{b64(CIPHERTEXT)}+", "ciphertext is not canonical base64"),
        (f"qi-enc:v1:k1:{b64(NONCE)}:{b64(CIPHERTEXT)}é", "ciphertext is not canonical base64"),
        (
            f"qi-enc:v1:k1:{b64(NONCE)}:{b64(bytes(15))}",
            "ciphertext is shorter than the authentication tag",
        ),
        (f"qi-enc:v1:k1:{b64(NONCE)}:", "ciphertext is shorter than the authentication tag"),
        ("qi-enc:v1:k1:" + "A" * MAX_TOKEN_LENGTH, "too long"),
        (
            f"qi-enc:v1:k1:{b64(NONCE)}:{b64(bytes(MAX_PLAINTEXT_BYTES + 17))}",
            "ciphertext is too long",
        ),
    ],
)
def test_malformed_tokens(token: str, reason: str) -> None:
    with pytest.raises(SecretDecryptionError) as excinfo:
        EncryptedSecret.parse(token)
    text = str(excinfo.value)
    assert text == f"malformed token: {reason}"
    assert_no_material(text)


def test_noncanonical_padding_bits_are_rejected() -> None:
    # A 12-byte nonce is 16 base64 chars with no spare bits; use the ciphertext instead:
    # 40 bytes -> 54 chars, the last of which carries 2 unused bits.
    encoded = b64(CIPHERTEXT)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = encoded[:-1] + alphabet[alphabet.index(encoded[-1]) ^ 1]
    padded = tweaked + "=" * (-len(tweaked) % 4)
    assert base64.urlsafe_b64decode(padded) == CIPHERTEXT  # decodes to the same bytes...
    with pytest.raises(SecretDecryptionError, match="ciphertext is not canonical base64"):
        EncryptedSecret.parse(f"qi-enc:v1:k1:{b64(NONCE)}:{tweaked}")  # ...but is rejected
