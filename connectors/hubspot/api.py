"""The HubSpot part of ``PUT /v1/tenants/{tenant_id}/connections/hubspot``.

- ``auth``: a private app ``{"type": "private_app", "token"}`` or a public app installation
  ``{"type": "oauth", "client_id", "client_secret", "refresh_token"}``; stored as given
  (secrets sealed), the access token is the connector's business.
- ``queast_id_property``, ``note_id_property``: internal property names
  (``^[a-z][a-z0-9_]*$``, at most 100 characters), as
  :class:`~connectors.hubspot.config.HubSpotConnectionConfig` takes them;
- ``tier``: ``free_starter``, ``professional_enterprise`` or ``oauth_app``.

Each option left out takes the connector's default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from connectors.base.api import (
    AuthInput,
    ConnectionOptions,
    OAuthInstallInput,
    PlainSecret,
    secrets_required,
)
from connectors.hubspot.config import HubSpotTier

__all__ = ["HubSpotOAuth", "HubSpotOptions", "HubSpotPrivateApp"]

HubSpotPropertyName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")
]
"""A HubSpot property's internal name (as :class:`HubSpotConnectionConfig` accepts it)."""


class HubSpotPrivateApp(AuthInput):
    model_config = ConfigDict(json_schema_extra=secrets_required("token"))

    type: Literal["private_app"]
    token: PlainSecret | None = None


class HubSpotOAuth(OAuthInstallInput):
    # A public app installation. No docstring: the OpenAPI schema has no description.
    pass


HubSpotAuthIn = Annotated[HubSpotPrivateApp | HubSpotOAuth, Field(discriminator="type")]


class HubSpotOptions(ConnectionOptions):
    """A HubSpot connection: a private app token or OAuth credentials, and partner options."""

    auth: HubSpotAuthIn | None = None
    queast_id_property: HubSpotPropertyName | None = None
    note_id_property: HubSpotPropertyName | None = None
    tier: HubSpotTier | None = None

    @property
    def auth_input(self) -> AuthInput | None:
        return self.auth
