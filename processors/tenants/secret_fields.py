"""Secret fields inside a connection's ``settings`` block: sealed at rest, redacted on display.

A field is secret by its name (:func:`secret_field_names`), at any depth of the block
(``{"webhook": {"secret": ...}}``, ``{"auth": {"refresh_token": ...}}``). The names come from
the registry: every field a registered connector's config class declares as ``SecretStr``
(:meth:`~connectors.base.config.ConnectionConfig.secret_field_names`), so a new connector's
secrets are sealed and redacted whatever it calls them, with no edit here. A name is secret in
every connection's block once any registered connector declares it. (The fixed list this
replaced also named ``api_token``, ``password`` and ``http_auth_password``, which no connector
declares: a settings block with such a key fails its connector's validation, so none is stored.)
Sealed values are
:mod:`processors.secrets` tokens bound to the tenant, the connection and the field's dotted path
(the purpose), so a token copied to another tenant, connection or field does not open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from connectors.base.api import SEALED_PREFIX
from connectors.base.config import ConnectionConfig
from connectors.registry import registered
from processors.secrets import REDACTED, SecretBox

__all__ = [
    "SEALED_PREFIX",
    "iter_secret_paths",
    "map_secret_fields",
    "open_settings",
    "redact_settings",
    "seal_settings",
    "secret_field_names",
]


def secret_field_names() -> frozenset[str]:
    """The names of the secret fields of every registered connector's config class."""
    return _names_of(tuple(spec.config_class for spec in registered().values()))


@lru_cache(maxsize=8)
def _names_of(config_classes: tuple[type[ConnectionConfig], ...]) -> frozenset[str]:
    return frozenset().union(*(config.secret_field_names() for config in config_classes))


def map_secret_fields(
    block: dict[str, Any], transform: Callable[[str, str], str], path: str = ""
) -> dict[str, Any]:
    """A copy of ``block`` with each secret field's value replaced by
    ``transform(dotted path, value)``; every other field as it is."""
    return _map(block, transform, path, secret_field_names())


def _map(
    block: dict[str, Any], transform: Callable[[str, str], str], path: str, names: frozenset[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in block.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            result[key] = _map(value, transform, here, names)
        elif key in names and isinstance(value, str):
            result[key] = transform(here, value)
        else:
            result[key] = value
    return result


def iter_secret_paths(block: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted path, value)`` of every secret field."""
    names = secret_field_names()
    for key, value in block.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            yield from iter_secret_paths(value, here)
        elif key in names and isinstance(value, str):
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
