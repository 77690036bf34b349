"""How requests to Pipedrive are authenticated.

- :class:`ApiTokenAuth`: the user's API token in the ``x-api-token`` header (the only API
  key scheme of Pipedrive's specs; the ``?api_token=`` query parameter is not used: it
  would put the token in URLs and logs).
- :class:`OAuthAuth`: ``Authorization: Bearer <access token>``, refreshed at
  ``POST https://oauth.pipedrive.com/oauth/token`` (form ``grant_type=refresh_token``,
  HTTP Basic client credentials). It refreshes ahead of expiry (``refresh_margin_seconds``
  before it, or half the token's lifetime when that is shorter), and once more when
  Pipedrive answers 401 (the client then retries the request once); a refresh token
  Pipedrive refuses is an ``AuthenticationError`` (the connection needs re-authorisation).
  The response's ``api_domain`` (the company's own API host) becomes the base URL unless
  the connection sets one.

After every refresh the ``on_token_refreshed`` hook receives the new tokens, so the service
can store them (Pipedrive may hand out a new refresh token). A failing hook is logged and
does not fail the delivery. Tokens never appear in logs or errors.

Pipedrive rotates refresh tokens: once one sink of a connection has refreshed, the refresh
token every other sink of it holds (another worker's, during a rebalance) is refused. So a
refused refresh first asks ``reload_grant`` once for the connection's latest stored tokens.
Tokens with another refresh token are adopted: their access token is used as is when it is
unexpired and not the one held (rejected or expired), otherwise they are refreshed once with
the stored refresh token. Only when there is nothing new, or that refresh is refused too, is
it an ``AuthenticationError``. A failing ``reload_grant`` counts as nothing new.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx
from pydantic import SecretStr

from connectors.base.config import reveal_secret
from connectors.base.context import Clock
from connectors.base.errors import AuthenticationError, TransientError
from connectors.base.http import endpoint_label, raise_for_response, translate_http_errors
from connectors.pipedrive.config import PipedriveOAuth, check_partner_url

__all__ = [
    "DEFAULT_REFRESH_MARGIN_SECONDS",
    "ApiTokenAuth",
    "GrantReloadHook",
    "OAuthAuth",
    "OAuthTokens",
    "PipedriveAuth",
    "TokenRefreshedHook",
]

_PARTNER: Final[str] = "pipedrive"
DEFAULT_REFRESH_MARGIN_SECONDS: Final[float] = 120.0
"""Refresh when the access token has less than this left (Pipedrive's live ~1 hour)."""
_REFUSED_REFRESH_STATUSES: Final[frozenset[int]] = frozenset({400, 401, 403})


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthTokens:
    """The tokens of a refresh, for the service to store (secrets stay ``SecretStr``)."""

    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: float
    """Unix seconds."""
    api_domain: str | None


TokenRefreshedHook = Callable[[OAuthTokens], Awaitable[None]]
GrantReloadHook = Callable[[], Awaitable[OAuthTokens | None]]
"""Returns the connection's latest stored tokens (``None``: none), after a refused refresh."""


class PipedriveAuth(Protocol):
    """What the client asks of an authentication scheme."""

    @property
    def api_domain(self) -> str | None:
        """The API host Pipedrive named for this account (OAuth), if any."""
        ...

    async def headers(self) -> dict[str, str]:
        """Headers that authenticate the next request.

        Raises ``AuthenticationError`` when no valid credential can be had, and
        ``TransientError``/``BackpressureError`` when a needed refresh failed for now.
        """
        ...

    async def refresh_after_unauthorized(self, used: Mapping[str, str]) -> bool:
        """Called once per request after a 401 answered ``used`` headers.

        Returns whether retrying the request may help (a new credential is available).
        """
        ...


class ApiTokenAuth:
    """A personal API token: nothing to refresh, a 401 is final."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    @property
    def api_domain(self) -> str | None:
        return None

    async def headers(self) -> dict[str, str]:
        return {"x-api-token": reveal_secret(self._token)}

    async def refresh_after_unauthorized(self, used: Mapping[str, str]) -> bool:
        return False


class OAuthAuth:
    """An OAuth installation whose access token is refreshed on demand (one at a time)."""

    def __init__(
        self,
        config: PipedriveOAuth,
        *,
        http_client: httpx.AsyncClient,
        clock: Clock,
        allow_private_networks: bool = False,
        on_token_refreshed: TokenRefreshedHook | None = None,
        reload_grant: GrantReloadHook | None = None,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        logger: logging.Logger | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._client_id = config.client_id
        self._client_secret = config.client_secret
        self._refresh_token = config.refresh_token
        self._access_token = config.access_token
        self._expires_at = config.expires_at
        self._api_domain: str | None = None
        self._token_url = str(config.token_url)
        self._http = http_client
        self._clock = clock
        self._allow_private_networks = allow_private_networks
        self._on_token_refreshed = on_token_refreshed
        self._reload_grant = reload_grant
        self._margin = refresh_margin_seconds
        self._renew_at = None if self._expires_at is None else self._expires_at - self._margin
        self._logger = logger or logging.getLogger("connectors.pipedrive")
        self._log_fields = dict(log_fields or {})
        self._lock = asyncio.Lock()
        self.refreshes = 0
        """How many refreshes succeeded (for tests and metrics)."""

    @property
    def api_domain(self) -> str | None:
        """The ``api_domain`` of the latest refresh (``None`` before the first)."""
        return self._api_domain

    def _fresh(self) -> bool:
        """Whether the access token can be used as it is (an unknown expiry counts as fresh)."""
        if self._access_token is None:
            return False
        if self._renew_at is None:
            return True
        return self._clock.time() < self._renew_at

    async def headers(self) -> dict[str, str]:
        """A bearer header; refreshes first when the token is missing or about to expire."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._refresh(reason="expiry")
        return self._bearer()

    async def refresh_after_unauthorized(self, used: Mapping[str, str]) -> bool:
        """Refresh unless another request already replaced the rejected token."""
        async with self._lock:
            if self._access_token is not None and used.get("authorization") != self._bearer().get(
                "authorization"
            ):
                return True
            await self._refresh(reason="unauthorized")
        return True

    def _bearer(self) -> dict[str, str]:
        if self._access_token is None:  # _refresh either set one or raised
            raise AuthenticationError("no oauth access token", partner=_PARTNER)
        return {"authorization": f"Bearer {reveal_secret(self._access_token)}"}

    async def _refresh(self, *, reason: str, reload: bool = True) -> None:
        endpoint = endpoint_label(self._token_url)
        with translate_http_errors(partner=_PARTNER, endpoint=endpoint):
            response = await self._http.post(
                self._token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": reveal_secret(self._refresh_token),
                },
                auth=httpx.BasicAuth(self._client_id, reveal_secret(self._client_secret)),
                headers={"accept": "application/json"},
            )
        if response.status_code in _REFUSED_REFRESH_STATUSES:
            self._logger.warning(
                "pipedrive.oauth.refresh_refused",
                extra={**self._log_fields, "status_code": response.status_code},
            )
            if reload and await self._adopt_stored_tokens():
                if not self._fresh():
                    await self._refresh(reason="reloaded", reload=False)
                return
            raise AuthenticationError(
                "oauth refresh token refused",
                partner=_PARTNER,
                endpoint=endpoint,
                status_code=response.status_code,
            )
        raise_for_response(response, partner=_PARTNER, endpoint=endpoint, clock=self._clock.time)
        tokens = self._read_tokens(response, endpoint)
        lifetime = tokens.expires_at - self._clock.time()
        self._access_token = tokens.access_token
        self._refresh_token = tokens.refresh_token
        self._expires_at = tokens.expires_at
        self._renew_at = tokens.expires_at - min(self._margin, lifetime / 2)
        if tokens.api_domain is not None:
            self._api_domain = tokens.api_domain
        self.refreshes += 1
        self._logger.info(
            "pipedrive.oauth.refreshed",
            extra={
                **self._log_fields,
                "reason": reason,
                "expires_in": round(tokens.expires_at - self._clock.time()),
            },
        )
        if self._on_token_refreshed is not None:
            try:
                await self._on_token_refreshed(tokens)
            except Exception as exc:  # storing is best effort; the tokens work in memory
                self._logger.error(
                    "pipedrive.oauth.store_failed",
                    extra={**self._log_fields, "error_class": type(exc).__name__},
                )

    async def _adopt_stored_tokens(self) -> bool:
        """Take the stored tokens if they hold another refresh token; whether they were taken.

        The adopted access token stays only if it is not the one held (rejected or expired);
        :meth:`_fresh` then tells whether it is still unexpired.
        """
        if self._reload_grant is None:
            return False
        try:
            stored = await self._reload_grant()
        except Exception as exc:  # reloading is best effort; the refusal stands
            self._logger.warning(
                "pipedrive.oauth.reload_failed",
                extra={**self._log_fields, "error_class": type(exc).__name__},
            )
            return False
        if stored is None or reveal_secret(stored.refresh_token) == reveal_secret(
            self._refresh_token
        ):
            return False
        previous = self._access_token
        same = previous is not None and reveal_secret(previous) == reveal_secret(
            stored.access_token
        )
        self._refresh_token = stored.refresh_token
        self._access_token = None if same else stored.access_token
        self._expires_at = None if same else stored.expires_at
        self._renew_at = None if same else stored.expires_at - self._margin
        if stored.api_domain is not None:
            self._api_domain = self._accepted_api_domain(stored.api_domain) or self._api_domain
        self._logger.info("pipedrive.oauth.grant_reloaded", extra=self._log_fields)
        return True

    def _read_tokens(self, response: httpx.Response, endpoint: str) -> OAuthTokens:
        unreadable = TransientError(
            "unreadable oauth token response",
            partner=_PARTNER,
            endpoint=endpoint,
            status_code=response.status_code,
        )
        try:
            document = response.json()
        except ValueError:
            raise unreadable from None
        if not isinstance(document, dict):
            raise unreadable
        access = document.get("access_token")
        expires_in = _positive_seconds(document.get("expires_in"))
        if not isinstance(access, str) or not access or expires_in is None:
            raise unreadable
        refresh = document.get("refresh_token")
        return OAuthTokens(
            access_token=SecretStr(access),
            refresh_token=SecretStr(refresh)
            if isinstance(refresh, str) and refresh
            else self._refresh_token,
            expires_at=self._clock.time() + expires_in,
            api_domain=self._accepted_api_domain(document.get("api_domain")),
        )

    def _accepted_api_domain(self, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        try:
            return check_partner_url(
                value, allow_private_networks=self._allow_private_networks, what="api_domain"
            ).rstrip("/")
        except ValueError:
            self._logger.warning("pipedrive.oauth.api_domain_refused", extra=self._log_fields)
            return None


def _positive_seconds(value: object) -> float | None:
    """``value`` as seconds if it is a positive finite number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else None
