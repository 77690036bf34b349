"""The per-connection configuration every connector declares.

Each connector subclasses :class:`ConnectionConfig` (frozen, unknown keys refused) and
names it as its sink's ``config_class``. The service validates a tenant's stored settings
with :meth:`ConnectionConfig.validate_for_connection` before a sink sees them.

Credentials are ``SecretStr`` fields: they print as ``**********``, ``model_dump`` keeps
them redacted unless asked otherwise, and validation errors never echo any input
(``hide_input_in_errors``), so a mistyped secret cannot leak into a log. ``errors()``
still carries each ``input``: render errors for API responses with
``exc.errors(include_input=False)`` (or ``exc.json(include_input=False)``).
:meth:`ConnectionConfig.secret_field_names` tells the service which fields to encrypt at
rest.
"""

from __future__ import annotations

from typing import Any, Self, get_args

from pydantic import BaseModel, ConfigDict, HttpUrl, SecretStr, ValidationInfo

__all__ = [
    "ALLOW_PRIVATE_NETWORKS",
    "ConnectionConfig",
    "allows_private_networks",
    "check_url",
    "reveal_secret",
]

ALLOW_PRIVATE_NETWORKS: str = "allow_private_networks"
"""Key of the validation context flag that permits local destinations (dev and tests)."""


def allows_private_networks(info: ValidationInfo) -> bool:
    """Read the ``allow_private_networks`` flag from a validator's context (default off)."""
    context = info.context
    return bool(isinstance(context, dict) and context.get(ALLOW_PRIVATE_NETWORKS, False))


def check_url(
    url: HttpUrl, *, what: str, allow_private_networks: bool, allow_query: bool = False
) -> HttpUrl:
    """``url`` if a connector may send credentials or data there; ``ValueError`` otherwise.

    Refused, in this order: user info (credentials belong in secrets, and URLs are shown in
    API responses), a query or fragment (unless ``allow_query``), and any scheme but ``https``
    unless ``allow_private_networks``. ``what`` names the field in the message.
    """
    if url.username or url.password:
        msg = f"{what} must not contain credentials"
        raise ValueError(msg)
    if not allow_query and (url.query or url.fragment):
        msg = f"{what} must not have a query or fragment"
        raise ValueError(msg)
    if url.scheme != "https" and not allow_private_networks:
        msg = f"{what} must use https"
        raise ValueError(msg)
    return url


def reveal_secret(secret: SecretStr) -> str:
    """The plain value of a secret, for the one call that needs it (signing, auth headers).

    A named helper instead of scattered ``get_secret_value()`` calls, so every place that
    handles a plain secret is easy to find.
    """
    return secret.get_secret_value()


class ConnectionConfig(BaseModel):
    """Base of every connector's connection settings: frozen, extra keys forbidden."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    @classmethod
    def validate_for_connection(
        cls, data: dict[str, Any], *, allow_private_networks: bool = False
    ) -> Self:
        """Validate stored settings; raises ``pydantic.ValidationError`` (no input echoed)."""
        return cls.model_validate(data, context={ALLOW_PRIVATE_NETWORKS: allow_private_networks})

    @classmethod
    def secret_field_names(cls) -> frozenset[str]:
        """Names of the ``SecretStr`` fields (to encrypt at rest and redact in responses), at
        any depth: the fields of nested models (``auth: OAuth | PrivateApp``) count too."""
        return _secret_names(cls, frozenset())

    def redacted(self) -> dict[str, Any]:
        """JSON-able settings with every secret shown as ``**********``."""
        return self.model_dump(mode="json")


def _secret_names(model: type[BaseModel], outer: frozenset[type[BaseModel]]) -> frozenset[str]:
    """The ``SecretStr`` field names of ``model`` and of the models its fields hold (through
    unions, optionals and containers); ``outer`` are the models already being walked."""
    names: set[str] = set()
    pending: list[tuple[str, Any]] = [(n, f.annotation) for n, f in model.model_fields.items()]
    while pending:
        name, annotation = pending.pop()
        if annotation is SecretStr:
            names.add(name)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in outer and annotation is not model:
                names |= _secret_names(annotation, outer | {model})
        else:
            pending.extend((name, argument) for argument in get_args(annotation))
    return frozenset(names)
