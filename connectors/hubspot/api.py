"""The HubSpot part of ``PUT /v1/tenants/{tenant_id}/connections/hubspot``.

- ``auth``: a private app ``{"type": "private_app", "token"}`` or a public app installation
  ``{"type": "oauth", "client_id", "client_secret", "refresh_token"}``; stored as given
  (secrets sealed), the access token is the connector's business.
- ``queast_id_property``, ``note_id_property``: internal property names
  (``^[a-z][a-z0-9_]*$``, at most 100 characters), as
  :class:`~connectors.hubspot.config.HubSpotConnectionConfig` takes them;
- ``tier``: ``free_starter``, ``professional_enterprise`` or ``oauth_app``.

Each option left out takes the connector's default.

:class:`HubSpotInboundIn` is the body's ``inbound`` block (the connector's spec names it as
``inbound_options``): the app's client secret that signs HubSpot's webhook requests, the
interest property and its values, whether v1/v2-only signatures are accepted, and the source
networks allowed, as :class:`~connectors.hubspot.config.HubSpotInbound` takes them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, IPvAnyNetwork, StringConstraints, field_validator

from connectors.base.api import (
    ApiModel,
    AuthInput,
    ConnectionOptions,
    OAuthInstallInput,
    PlainSecret,
    secrets_required,
)
from connectors.hubspot.config import MAX_CLIENT_SECRET_CHARS, HubSpotTier, InterestValue

__all__ = ["HubSpotInboundIn", "HubSpotOAuth", "HubSpotOptions", "HubSpotPrivateApp"]

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


class HubSpotInboundIn(ApiModel):
    """HubSpot's webhooks calling us: the app's ``client_secret`` (it signs each request),
    the company property (``interest_property``) whose values (``interest_values``) mark
    interest, whether requests signed only with v1/v2 (no timestamp) are accepted, and the
    source networks allowed (empty: any)."""

    model_config = ConfigDict(
        json_schema_extra=secrets_required(
            "client_secret", overrides={"maxLength": MAX_CLIENT_SECRET_CHARS}
        )
    )

    enabled: bool = False
    client_secret: PlainSecret | None = None
    interest_property: HubSpotPropertyName = "queast_interest"
    interest_values: list[InterestValue] = Field(
        default_factory=lambda: ["true"], min_length=1, max_length=100
    )
    accept_legacy_signatures: bool = True
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, max_length=100)

    @field_validator("client_secret")
    @classmethod
    def _check_client_secret(cls, secret: PlainSecret | None) -> PlainSecret | None:
        if secret is None:
            return None
        plain = secret.get_secret_value()
        if not plain.strip():
            msg = "must not be blank"
            raise ValueError(msg)
        if len(plain) > MAX_CLIENT_SECRET_CHARS:
            msg = f"must be at most {MAX_CLIENT_SECRET_CHARS} characters"
            raise ValueError(msg)
        return secret
