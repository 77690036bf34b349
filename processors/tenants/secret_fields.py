"""Secret fields inside a connection's ``settings`` block: sealed at rest, redacted on display.

A field is secret by its name (:data:`SECRET_FIELD_NAMES`), at any depth of the block
(``{"webhook": {"secret": ...}}``, ``{"auth": {"refresh_token": ...}}``). Sealed values are
:mod:`processors.secrets` tokens bound to the tenant, the connection and the field's dotted path
(the purpose), so a token copied to another tenant, connection or field does not open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from connectors.base.api import SEALED_PREFIX
from processors.secrets import REDACTED, SecretBox

__all__ = [
    "SEALED_PREFIX",
    "SECRET_FIELD_NAMES",
    "iter_secret_paths",
    "map_secret_fields",
    "open_settings",
    "redact_settings",
    "seal_settings",
]

SECRET_FIELD_NAMES: Final = frozenset(
    {
        "secret",
        "token",
        "api_token",
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
        "http_auth_password",
    }
)


def map_secret_fields(
    block: dict[str, Any], transform: Callable[[str, str], str], path: str = ""
) -> dict[str, Any]:
    """A copy of ``block`` with each secret field's value replaced by
    ``transform(dotted path, value)``; every other field as it is."""
    result: dict[str, Any] = {}
    for key, value in block.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            result[key] = map_secret_fields(value, transform, here)
        elif key in SECRET_FIELD_NAMES and isinstance(value, str):
            result[key] = transform(here, value)
        else:
            result[key] = value
    return result


def iter_secret_paths(block: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted path, value)`` of every secret field."""
    for key, value in block.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            yield from iter_secret_paths(value, here)
        elif key in SECRET_FIELD_NAMES and isinstance(value, str):
            yield here, value


def seal_settings(
    block: dict[str, Any], *, box: SecretBox, tenant_id: str, connection_id: str
) -> dict[str, Any]:
    """Encrypt every plaintext secret field; already sealed values are left as they are."""

    def _seal(path: str, value: str) -> str:
        if value.startswith(SEALED_PREFIX):
            return value
        return box.encrypt(value, tenant_id=tenant_id, connection_id=connection_id, purpose=path)

    return map_secret_fields(block, _seal)


def open_settings(
    block: dict[str, Any], *, box: SecretBox, tenant_id: str, connection_id: str
) -> dict[str, Any]:
    """Decrypt every sealed field (raises ``SecretDecryptionError`` if one does not open)."""

    def _open(path: str, value: str) -> str:
        if not value.startswith(SEALED_PREFIX):
            return value
        return box.decrypt(value, tenant_id=tenant_id, connection_id=connection_id, purpose=path)

    return map_secret_fields(block, _open)


def redact_settings(block: dict[str, Any]) -> dict[str, Any]:
    """The block with every secret field replaced by the redaction marker."""
    return map_secret_fields(block, lambda _path, _value: REDACTED)
