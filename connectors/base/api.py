"""The parts of a connection's API body that a connector contributes.

``PUT /v1/tenants/{tenant_id}/connections/<connector>`` takes one body per connector. The
service (``processors.tenants.schemas``) owns the fields every connection has (``enabled``,
``event_types``, ``delivery_mode``, the tenant's own ``webhook`` endpoint, the identity
``match_policy``, ...) and composes them with the connector's :class:`ConnectionOptions`
subclass, named in its :class:`~connectors.registry.ConnectorSpec` (``api_options``). So a
connector declares here only what is its own:

- its credentials, as an ``auth`` field of :class:`AuthInput` subclasses (a discriminated
  union on ``type`` when there are several kinds), each turning itself into the stored
  ``auth`` block with :meth:`AuthInput.settings`;
- its options, under the names of its config class (the service stores them at the top of
  the connection's settings, where the sink factory hands them to that class unchanged);
- for the connector that carries partner connections' webhook copies, the endpoint block
  (:class:`EndpointOptions`), which the service uses as every connection's ``webhook`` block.

Secrets are :data:`PlainSecret`: required non-empty strings in the OpenAPI document (see
:func:`secrets_required`), optional in validation (a replace that leaves one out keeps the
stored value), never the redaction marker the API shows in responses and never an already
sealed token (:data:`REDACTED`, :data:`SEALED_PREFIX`, defined here so that connectors and the
service agree on them without connectors importing the service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, StringConstraints

__all__ = [
    "MAX_SECRET_CHARS",
    "REDACTED",
    "SEALED_PREFIX",
    "ApiModel",
    "AuthInput",
    "ClientId",
    "ConnectionOptions",
    "EndpointOptions",
    "OAuthInstallInput",
    "PlainSecret",
    "SchemaHook",
    "SecretSource",
    "secrets_required",
]

REDACTED: Final = "***redacted***"
"""The marker every secret is replaced by in responses and logs."""

SEALED_PREFIX: Final = "qi-enc:"
"""How a secret sealed at rest begins (the service's encrypted tokens)."""

MAX_SECRET_CHARS: Final = 4096

ClientId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""An OAuth app's client id, as a body gives it."""

SchemaHook = Callable[[dict[str, Any]], None]
"""A ``json_schema_extra`` hook: amends a model's JSON schema in place."""

SecretSource = Callable[[SecretStr | None, str], str]
"""Given a secret field's value from the body (``None``: left out) and its name, the value
to store: the new plaintext, or the stored sealed token it keeps (see the service)."""


def _plain_secret(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value()
    if not plain:
        msg = "must not be empty"
        raise ValueError(msg)
    if len(plain) > MAX_SECRET_CHARS:
        msg = f"must be at most {MAX_SECRET_CHARS} characters"
        raise ValueError(msg)
    if REDACTED in plain or plain.startswith(SEALED_PREFIX):
        msg = "send the secret itself, or leave the field out to keep the stored one"
        raise ValueError(msg)
    return value


PlainSecret = Annotated[SecretStr, AfterValidator(_plain_secret)]
"""A secret as a client sends it: never the redaction marker, never a sealed token."""

_SECRET_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "format": "password",
    "writeOnly": True,
    "minLength": 1,
    "maxLength": MAX_SECRET_CHARS,
    "description": (
        "Required to create the connection. When replacing it, leave the field out to keep the "
        "stored value (same field, same auth type). Never the redaction marker or a sealed token."
    ),
}


def secrets_required(*fields: str, overrides: dict[str, Any] | None = None) -> SchemaHook:
    """A ``json_schema_extra`` hook: the secret ``fields`` become required non-empty strings."""

    def amend(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        for name in fields:
            title = properties[name].get("title", name)
            properties[name] = {**_SECRET_SCHEMA, **(overrides or {}), "title": title}
        required = list(schema.get("required", []))
        schema["required"] = required + [name for name in fields if name not in required]

    return amend


class ApiModel(BaseModel):
    """Base of request-body models: frozen, unknown keys refused, inputs never in errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AuthInput(ApiModel):
    """One kind of credentials in a body's ``auth`` block, told apart by ``type``."""

    type: str

    def settings(self, secret: SecretSource) -> dict[str, Any]:
        """The stored ``auth`` block: every field JSON-ready, in declaration order, each
        ``SecretStr`` field through ``secret``. Override to store a field differently."""
        block: dict[str, Any] = {}
        dumped = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr) or (value is None and _is_secret(field.annotation)):
                block[name] = secret(value, name)
            else:
                block[name] = dumped[name]
        return block


def _is_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in getattr(annotation, "__args__", ()))


class OAuthInstallInput(AuthInput):
    """An OAuth app installation as a body gives it: the client and a refresh token (the
    connector gets access tokens itself). Connectors subclass it under their own name."""

    model_config = ConfigDict(json_schema_extra=secrets_required("client_secret", "refresh_token"))

    type: Literal["oauth"]
    client_id: ClientId
    client_secret: PlainSecret | None = None
    refresh_token: PlainSecret | None = None


class ConnectionOptions(ApiModel):
    """Base of a connector's part of the connection body (none by default)."""

    @property
    def auth_input(self) -> AuthInput | None:
        """The credentials the body gives, for connectors with an ``auth`` field."""
        return None


class EndpointOptions(ConnectionOptions):
    """A signed endpoint the tenant names: the options of the connector that carries
    webhook copies, and the ``webhook`` block of every connection body. ``url`` and
    ``secret`` are fields of that connector's config class too, which checks them."""

    url: str
    secret: PlainSecret | None = None
