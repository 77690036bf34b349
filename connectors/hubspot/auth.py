"""How requests to HubSpot are authenticated: a private app token, or an OAuth installation.

Both are :class:`~connectors.base.oauth.TokenSource`\\ s of the OAuth kit
(:mod:`connectors.base.oauth`), sent as ``Authorization: Bearer``:

- :class:`PrivateAppToken`: the configured private app token; it cannot be renewed, so a
  401 stands.
- :class:`HubSpotOAuthSource`: an OAuth installation, refreshed by the kit at
  ``POST {base_url}/oauth/v1/token`` with ``client_id`` and ``client_secret`` in the form.
  HubSpot's answer is the standard one (``access_token``, ``expires_in``, usually
  ``refresh_token``); it names no API host. The refresh margin is 60 s; log events start
  with ``hubspot.token``.
"""

from __future__ import annotations

from typing import ClassVar, Final

import httpx
from pydantic import SecretStr

from connectors.base.context import SinkContext
from connectors.base.oauth import (
    OAuthTokenSource,
    StaticToken,
    TokenSourceOptions,
    options_from,
)
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotOAuth

__all__ = ["HubSpotOAuthSource", "PrivateAppToken", "oauth_source", "token_source_for"]

_OAUTH_GRANT_PATH: Final[str] = "/oauth/v1/token"


class PrivateAppToken(StaticToken):
    """A private app's static bearer token."""

    def __init__(self, token: SecretStr) -> None:
        super().__init__(token)


class HubSpotOAuthSource(OAuthTokenSource):
    """A HubSpot OAuth installation's access token (see the module docstring)."""

    partner: ClassVar[str] = "hubspot"
    log_prefix: ClassVar[str] = "hubspot.token"
    default_refresh_margin: ClassVar[float] = 60.0


def token_source_for(
    config: HubSpotConnectionConfig,
    *,
    http_client: httpx.AsyncClient,
    context: SinkContext[HubSpotConnectionConfig],
) -> PrivateAppToken | HubSpotOAuthSource:
    """The token source ``config.auth`` asks for (called once per sink setup)."""
    auth = config.auth
    if not isinstance(auth, HubSpotOAuth):
        return PrivateAppToken(auth.token)
    return oauth_source(config, auth, http_client=http_client, options=options_from(context))


def oauth_source(
    config: HubSpotConnectionConfig,
    auth: HubSpotOAuth,
    *,
    http_client: httpx.AsyncClient,
    options: TokenSourceOptions,
) -> HubSpotOAuthSource:
    """The OAuth installation's token source, for the sink or the inbound company reader."""
    token_url = f"{config.api_root}{_OAUTH_GRANT_PATH}"
    return HubSpotOAuthSource(auth, token_url=token_url, http_client=http_client, **options)
