"""The webhook part of a connection body: the tenant's own signed endpoint.

The webhook connector carries partner connections' webhook copies, so this block is both the
whole of a webhook connection's own options (``{"webhook": {...}}``) and the ``webhook`` block
of every other connection whose delivery mode is ``webhook`` or ``both``. The service checks
the URL and the secret with :class:`~connectors.webhook.config.WebhookConnectionConfig`,
which knows whether private networks are allowed.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import ConfigDict, StringConstraints

from connectors.base.api import EndpointOptions, PlainSecret, secrets_required

__all__ = ["WebhookEndpointIn"]

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
