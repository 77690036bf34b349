"""The at-rest token format of an encrypted secret.

Token (ASCII, ``:``-separated, 5 fields)::

    qi-enc:v1:<key_id>:<base64 nonce>:<base64 ciphertext+tag>

* ``qi-enc`` and ``v1`` are fixed (prefix and format version);
* ``key_id`` names the ring key that encrypted it (see :mod:`processors.secrets.keyring`);
* the nonce is 12 random bytes, fresh per encryption;
* the ciphertext is the AES-GCM output (ciphertext followed by its 16-byte tag).

Both binary fields are *canonical* URL-safe base64 without padding: a string that decodes
but would not be produced by the encoder (stray padding bits, ``=``, whitespace) is
rejected, so each token has exactly one spelling.

:class:`EncryptedSecret` is a frozen pydantic model that serialises to / validates from
this string, so it can be used as a field type of stored records.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

from processors.secrets.errors import SecretDecryptionError
from processors.secrets.keyring import KEY_ID_PATTERN, is_valid_key_id

__all__ = [
    "FORMAT_VERSION",
    "MAX_PLAINTEXT_BYTES",
    "MAX_TOKEN_LENGTH",
    "NONCE_SIZE_BYTES",
    "TAG_SIZE_BYTES",
    "TOKEN_PREFIX",
    "EncryptedSecret",
]

TOKEN_PREFIX = "qi-enc"  # noqa: S105 - a format marker, not a password
FORMAT_VERSION = "v1"
NONCE_SIZE_BYTES = 12
TAG_SIZE_BYTES = 16
MAX_PLAINTEXT_BYTES = 64 * 1024
"""Largest plaintext (UTF-8 bytes) accepted for encryption."""

MAX_TOKEN_LENGTH = (
    len(TOKEN_PREFIX)
    + len(FORMAT_VERSION)
    + 32  # longest key id
    + 4 * (NONCE_SIZE_BYTES + 2) // 3
    + 4 * (MAX_PLAINTEXT_BYTES + TAG_SIZE_BYTES + 2) // 3
    + 4  # separators
)
"""Longest token :meth:`EncryptedSecret.parse` will look at."""

_FIELD_COUNT = 5


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Decode canonical unpadded URL-safe base64, or return ``None``."""
    if not text.isascii() or "=" in text:
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    if _b64encode(data) != text:
        return None
    return data


def _malformed(reason: str) -> SecretDecryptionError:
    return SecretDecryptionError(f"malformed token: {reason}")


class EncryptedSecret(BaseModel):
    """One encrypted secret: key id, nonce and AES-GCM ciphertext+tag.

    Serialises (``model_dump``, ``model_dump_json``, ``str()``) to the token string and
    validates from either the token string or keyword fields; an invalid token string
    raises pydantic's ``ValidationError`` (input hidden) there, while :meth:`parse` raises
    :class:`SecretDecryptionError`. The repr shows the key id only. This model never
    holds a plaintext.
    """

    # hide_input_in_errors: a caller may pass a plaintext where a token is expected.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    key_id: Annotated[str, Field(pattern=f"^{KEY_ID_PATTERN.pattern}$")]
    nonce: Annotated[
        bytes,
        Field(strict=True, min_length=NONCE_SIZE_BYTES, max_length=NONCE_SIZE_BYTES, repr=False),
    ]
    ciphertext: Annotated[
        bytes,
        Field(
            strict=True,
            min_length=TAG_SIZE_BYTES,
            max_length=MAX_PLAINTEXT_BYTES + TAG_SIZE_BYTES,
            repr=False,
        ),
    ]

    @classmethod
    def parse(cls, token: str) -> EncryptedSecret:
        """Parse a token string.

        Raises:
            SecretDecryptionError: the token is malformed; the message says which part
                failed ("malformed token: ...") and never echoes the token text.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise _malformed("too long")
        parts = token.split(":")
        if len(parts) != _FIELD_COUNT:
            raise _malformed(f"expected {_FIELD_COUNT} ':'-separated fields")
        prefix, version, key_id, nonce_text, ciphertext_text = parts
        if prefix != TOKEN_PREFIX:
            raise _malformed(f"prefix is not {TOKEN_PREFIX!r}")
        if version != FORMAT_VERSION:
            raise _malformed("unsupported format version")
        if not is_valid_key_id(key_id):
            raise _malformed("invalid key id")
        nonce = _b64decode(nonce_text)
        if nonce is None:
            raise _malformed("nonce is not canonical base64")
        if len(nonce) != NONCE_SIZE_BYTES:
            raise _malformed(f"nonce must be {NONCE_SIZE_BYTES} bytes")
        ciphertext = _b64decode(ciphertext_text)
        if ciphertext is None:
            raise _malformed("ciphertext is not canonical base64")
        if len(ciphertext) < TAG_SIZE_BYTES:
            raise _malformed("ciphertext is shorter than the authentication tag")
        if len(ciphertext) > MAX_PLAINTEXT_BYTES + TAG_SIZE_BYTES:
            raise _malformed("ciphertext is too long")
        try:
            return cls(key_id=key_id, nonce=nonce, ciphertext=ciphertext)
        except ValidationError:  # unreachable given the checks above; kept as a guard
            raise _malformed("invalid fields") from None

    def to_token(self) -> str:
        """Return the canonical token string."""
        return ":".join(
            (
                TOKEN_PREFIX,
                FORMAT_VERSION,
                self.key_id,
                _b64encode(self.nonce),
                _b64encode(self.ciphertext),
            )
        )

    def __str__(self) -> str:
        return self.to_token()

    @model_validator(mode="before")
    @classmethod
    def _from_token_string(cls, data: Any) -> Any:  # noqa: ANN401 - pydantic hook signature
        if isinstance(data, str):
            try:
                parsed = cls.parse(data)
            except SecretDecryptionError as exc:
                # ValueError makes pydantic report a ValidationError.
                raise ValueError(str(exc)) from None
            return {"key_id": parsed.key_id, "nonce": parsed.nonce, "ciphertext": parsed.ciphertext}
        return data

    @model_serializer(mode="plain")
    def _to_token_string(self) -> str:
        return self.to_token()
