"""What a ciphertext is bound to, and its canonical associated-data encoding.

Every secret is bound to ``(tenant_id, connection_id, purpose)``. Together with the
token format version and the key id, these form the AES-GCM associated data, so a token
copied to another tenant, connection or purpose (or relabelled with another key id)
fails authentication.

Encoding (unambiguous by construction)::

    b"qi-secrets-aad" || for each field in (version, key_id, tenant_id, connection_id, purpose):
                             uint32 big-endian byte length || UTF-8 bytes

Length prefixes make ``("a", "bc")`` and ``("ab", "c")`` encode differently.
"""

from __future__ import annotations

import struct
from enum import StrEnum

from processors.secrets.errors import SecretBindingError

__all__ = ["AAD_DOMAIN", "MAX_BINDING_FIELD_BYTES", "SecretPurpose", "associated_data"]

AAD_DOMAIN = b"qi-secrets-aad"
"""Domain-separation prefix of the associated data."""

MAX_BINDING_FIELD_BYTES = 1024
"""Upper bound on the UTF-8 size of tenant_id, connection_id and purpose."""


class SecretPurpose(StrEnum):
    """Well-known purposes. Any non-empty string is accepted; prefer these values."""

    WEBHOOK_SIGNING_SECRET = "webhook_signing_secret"  # noqa: S105 - a label, not a password
    PARTNER_API_TOKEN = "partner_api_token"  # noqa: S105 - a label, not a password
    OAUTH_REFRESH_TOKEN = "oauth_refresh_token"  # noqa: S105 - a label, not a password


def _field(name: str, value: str) -> bytes:
    if not value:
        raise SecretBindingError(f"{name} must not be empty")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretBindingError(f"{name} is not encodable as UTF-8") from None
    if len(encoded) > MAX_BINDING_FIELD_BYTES:
        raise SecretBindingError(
            f"{name} is {len(encoded)} bytes, the limit is {MAX_BINDING_FIELD_BYTES}"
        )
    return encoded


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def associated_data(
    *, version: str, key_id: str, tenant_id: str, connection_id: str, purpose: str
) -> bytes:
    """Return the canonical associated data for one encryption.

    ``version`` and ``key_id`` come from the token format and the key ring and are
    trusted; the binding fields come from the caller and are validated.

    Raises:
        SecretBindingError: ``tenant_id``, ``connection_id`` or ``purpose`` is not a
            non-empty str, is not UTF-8 encodable, or exceeds
            :data:`MAX_BINDING_FIELD_BYTES`. The message names the field, never its value.
    """
    fields = (
        version.encode("ascii"),
        key_id.encode("ascii"),
        _field("tenant_id", tenant_id),
        _field("connection_id", connection_id),
        _field("purpose", purpose),
    )
    return AAD_DOMAIN + b"".join(_frame(field) for field in fields)
