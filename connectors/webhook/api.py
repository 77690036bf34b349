"""The webhook part of a connection body: the tenant's own signed endpoint.

The webhook connector carries partner connections' webhook copies, so this block is both the
whole of a webhook connection's own options (``{"webhook": {...}}``) and the ``webhook`` block
of every other connection whose delivery mode is ``webhook`` or ``both``. The service checks
the URL and the secret with :class:`~connectors.webhook.config.WebhookConnectionConfig`,
which knows whether private networks are allowed.

:class:`WebhookInboundIn` is the body's ``inbound`` block (the connector's spec names it as
``inbound_options``): a partner signing requests to us with its own ``whsec_`` secret, checked
here as :class:`~connectors.webhook.config.WebhookInbound` checks it.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import ConfigDict, Field, IPvAnyNetwork, StringConstraints, field_validator

from connectors.base.api import ApiModel, EndpointOptions, PlainSecret, secrets_required
from connectors.base.config import reveal_secret
from connectors.webhook.config import decode_signing_secret

__all__ = ["WebhookEndpointIn", "WebhookInboundIn"]

_WHSEC_PATTERN: Final = r"^whsec_[A-Za-z0-9+/]+={0,2}$"
"""The shape of a Standard Webhooks secret; the config also checks it decodes to 24 to 64
bytes."""


class WebhookEndpointIn(EndpointOptions):
    """The tenant's own signed endpoint. ``secret`` is a Standard Webhooks ``whsec_`` secret."""

    model_config = ConfigDict(
        json_schema_extra=secrets_required("secret", overrides={"pattern": _WHSEC_PATTERN})
    )

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    secret: PlainSecret | None = None


class WebhookInboundIn(ApiModel):
    """Signed requests a partner sends us (Standard Webhooks). ``secret`` is the ``whsec_``
    secret they sign with; ``ip_allowlist`` the source networks allowed (empty: any)."""

    model_config = ConfigDict(
        json_schema_extra=secrets_required("secret", overrides={"pattern": _WHSEC_PATTERN})
    )

    enabled: bool = False
    secret: PlainSecret | None = None
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, max_length=100)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: PlainSecret | None) -> PlainSecret | None:
        if secret is not None:
            decode_signing_secret(reveal_secret(secret))
        return secret
