"""How requests to Pipedrive are authenticated: an API token, or an OAuth installation.

Both are :class:`~connectors.base.oauth.TokenSource`\\ s of the OAuth kit
(:mod:`connectors.base.oauth`):

- :class:`ApiTokenAuth`: the user's API token in the ``x-api-token`` header (the only API
  key scheme of Pipedrive's specs; the ``?api_token=`` query parameter is not used: it
  would put the token in URLs and logs). A 401 stands.
- :class:`PipedriveOAuthSource`: ``Authorization: Bearer <access token>``, refreshed by the
  kit at the connection's ``token_url`` (``https://oauth.pipedrive.com/oauth/token`` by
  default) with HTTP Basic client credentials. The refresh margin is 120 s (Pipedrive's
  access tokens live about an hour); log events start with ``pipedrive.oauth``.

Pipedrive rotates refresh tokens (the kit's reload-before-giving-up logic exists for it),
and its token response names the company's own API host in ``api_domain``. That host is
accepted only where the connection's network policy lets the token go
(:func:`~connectors.pipedrive.config.check_partner_url`); it becomes the base URL unless the
connection sets one.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, Unpack

import httpx
from pydantic import SecretStr

from connectors.base.context import Clock
from connectors.base.oauth import OAuthSourceOptions, OAuthTokenSource, StaticToken
from connectors.pipedrive.config import PipedriveOAuth, check_partner_url

__all__ = ["DEFAULT_REFRESH_MARGIN_SECONDS", "ApiTokenAuth", "PipedriveOAuthSource"]

DEFAULT_REFRESH_MARGIN_SECONDS: Final[float] = 120.0
"""Refresh when the access token has less than this left (Pipedrive's live ~1 hour)."""


class ApiTokenAuth(StaticToken):
    """A personal API token, in the ``x-api-token`` header."""

    def __init__(self, token: SecretStr) -> None:
        super().__init__(token, header="x-api-token", prefix="")


class PipedriveOAuthSource(OAuthTokenSource):
    """A Pipedrive OAuth installation's access token (see the module docstring)."""

    partner: ClassVar[str] = "pipedrive"
    log_prefix: ClassVar[str] = "pipedrive.oauth"
    default_refresh_margin: ClassVar[float] = DEFAULT_REFRESH_MARGIN_SECONDS
    client_auth: ClassVar[Literal["form", "basic"]] = "basic"

    def __init__(
        self,
        config: PipedriveOAuth,
        *,
        http_client: httpx.AsyncClient,
        clock: Clock,
        allow_private_networks: bool = False,
        **options: Unpack[OAuthSourceOptions],
    ) -> None:
        super().__init__(
            config, token_url=str(config.token_url), http_client=http_client, clock=clock, **options
        )
        self._allow_private_networks = allow_private_networks

    def accept_api_domain(self, value: object) -> str | None:
        """``value`` without a trailing slash if the token may be sent there, else ``None``."""
        if not isinstance(value, str) or not value:
            return None
        try:
            return check_partner_url(
                value, allow_private_networks=self._allow_private_networks, what="api_domain"
            ).rstrip("/")
        except ValueError:
            self._logger.warning(self._event("api_domain_refused"), extra=self._log_fields)
            return None
