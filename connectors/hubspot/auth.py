"""Bearer tokens for HubSpot requests: a private app token, or an OAuth access token.

:class:`PrivateAppToken` hands out the configured token and cannot renew it.
:class:`OAuthTokenSource` keeps the access token in memory and renews it with the
refresh-token grant (``POST {base_url}/oauth/v1/token``, form-encoded
``grant_type=refresh_token&client_id&client_secret&refresh_token``; the answer carries
``access_token``, ``expires_in`` and usually ``refresh_token``):

- ahead of expiry: :meth:`OAuthTokenSource.token` renews once the token is within
  ``refresh_margin_seconds`` (60 s) of ``expires_at``, or when there is none yet. For a
  token that lives less than twice the margin, the margin is half its lifetime (otherwise
  every request would renew it);
- after a 401: :meth:`OAuthTokenSource.renew_after_rejection` renews once for the rejected
  token; the client retries the request once and a second 401 is an ``AuthenticationError``
  (the service parks the connection as ``needs_reauth``).

Concurrent callers share one renewal. Each renewal is handed to ``on_token_refreshed``
(a :class:`RefreshedToken`) so the service can persist it; a failing hook is logged and
does not fail the delivery. Logs carry the connection's coordinates and ``expires_in``,
never a token.

A refused renewal (400/401/403, e.g. ``invalid_grant``) first asks ``reload_grant`` once for
the connection's latest stored grant: another sink of the same connection (another worker,
during a rebalance) may have renewed it meanwhile, and a partner that rotates refresh tokens
then refuses the one this source holds. A stored grant with another refresh token is adopted:
its access token is used as is when it is unexpired and not the one just rejected, otherwise
it is renewed once with the stored refresh token. Only when there is nothing new to adopt,
or that renewal is refused too, is the refusal an ``AuthenticationError`` (the service parks
the connection as ``needs_reauth``). A failing ``reload_grant`` counts as nothing new.
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
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotOAuth

__all__ = [
    "GrantReloadHook",
    "OAuthTokenSource",
    "PrivateAppToken",
    "RefreshedToken",
    "TokenRefreshedHook",
    "TokenSource",
    "token_source_for",
]

_PARTNER: Final[str] = "hubspot"
_OAUTH_GRANT_PATH: Final[str] = "/oauth/v1/token"
_DEFAULT_REFRESH_MARGIN_SECONDS: Final[float] = 60.0
_REJECTED_GRANT_STATUSES: Final[frozenset[int]] = frozenset({400, 401, 403})


@dataclass(frozen=True, slots=True)
class RefreshedToken:
    """A renewed OAuth grant: the access token, when it expires (Unix seconds) and the
    refresh token to use from now on (the same one unless HubSpot rotated it)."""

    access_token: SecretStr
    expires_at: float
    refresh_token: SecretStr


TokenRefreshedHook = Callable[[RefreshedToken], Awaitable[None]]
"""Called after each renewal, e.g. to store the new token; must not block for long."""
GrantReloadHook = Callable[[], Awaitable[RefreshedToken | None]]
"""Returns the connection's latest stored grant (``None``: none), after a refused renewal."""


class TokenSource(Protocol):
    """Where the HubSpot client gets its bearer token."""

    async def token(self) -> SecretStr:
        """The token for the next request; raises ``AuthenticationError`` if there is none
        (renewal refused) and ``TransientError`` if renewal could not be attempted."""
        ...

    async def renew_after_rejection(self, rejected: SecretStr) -> bool:
        """Called once after a 401 for ``rejected``: whether a different token is now
        available to retry with. Raises like :meth:`token`."""
        ...


class PrivateAppToken:
    """A private app's static token."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def token(self) -> SecretStr:
        return self._token

    async def renew_after_rejection(self, rejected: SecretStr) -> bool:
        """A private app token cannot be renewed: a 401 stands."""
        return False


class OAuthTokenSource:
    """An OAuth installation's access token, renewed ahead of expiry and after a 401."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr,
        access_token: SecretStr | None = None,
        expires_at: float | None = None,
        clock: Clock,
        logger: logging.Logger,
        log_fields: Mapping[str, Any] | None = None,
        on_token_refreshed: TokenRefreshedHook | None = None,
        reload_grant: GrantReloadHook | None = None,
        refresh_margin_seconds: float = _DEFAULT_REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._http = http_client
        self._token_url = token_url
        self._endpoint = endpoint_label(token_url)
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._access_token = access_token
        # A stored token without an expiry is used until HubSpot rejects it.
        self._expires_at = expires_at if access_token is not None else None
        self._margin = refresh_margin_seconds
        self._renew_at = None if self._expires_at is None else self._expires_at - self._margin
        self._clock = clock
        self._logger = logger
        self._log_fields = dict(log_fields or {})
        self._on_token_refreshed = on_token_refreshed
        self._reload_grant = reload_grant
        self._lock = asyncio.Lock()

    @property
    def expires_at(self) -> float | None:
        """When the current access token expires (Unix seconds), if known."""
        return self._expires_at

    def _fresh(self) -> SecretStr | None:
        token = self._access_token
        if token is None:
            return None
        if self._renew_at is not None and self._clock.time() >= self._renew_at:
            return None
        return token

    async def token(self) -> SecretStr:
        """The current access token, renewed first when missing or about to expire."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self._fresh()  # another task may have renewed it meanwhile
            if fresh is not None:
                return fresh
            return await self._refresh(reason="expiry")

    async def renew_after_rejection(self, rejected: SecretStr) -> bool:
        """Renew once for ``rejected`` (unless another task already did)."""
        async with self._lock:
            current = self._access_token
            if current is not None and reveal_secret(current) != reveal_secret(rejected):
                return True
            await self._refresh(reason="rejected")
            return True

    async def _refresh(self, *, reason: str, reload: bool = True) -> SecretStr:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": reveal_secret(self._client_secret),
            "refresh_token": reveal_secret(self._refresh_token),
        }
        with translate_http_errors(partner=_PARTNER, endpoint=self._endpoint):
            response = await self._http.post(
                self._token_url, data=form, headers={"accept": "application/json"}
            )
            body = _json_or_none(response) if 200 <= response.status_code < 300 else None
        if response.status_code in _REJECTED_GRANT_STATUSES:
            self._logger.warning(
                "hubspot.token.refresh_rejected",
                extra={**self._log_fields, "status_code": response.status_code},
            )
            if reload and await self._adopt_stored_grant():
                fresh = self._fresh()
                if fresh is not None:
                    return fresh
                return await self._refresh(reason="reloaded", reload=False)
            raise AuthenticationError(
                "refresh token rejected",
                partner=_PARTNER,
                endpoint=self._endpoint,
                status_code=response.status_code,
            )
        raise_for_response(
            response, partner=_PARTNER, endpoint=self._endpoint, clock=self._clock.time
        )
        access, expires_in, refresh = _parse_grant(body)
        if access is None or expires_in is None:
            raise TransientError(
                "token response without access_token or expires_in",
                partner=_PARTNER,
                endpoint=self._endpoint,
                status_code=response.status_code,
            )
        self._access_token = SecretStr(access)
        self._expires_at = self._clock.time() + expires_in
        self._renew_at = self._expires_at - min(self._margin, expires_in / 2)
        if refresh is not None:
            self._refresh_token = SecretStr(refresh)
        self._logger.info(
            "hubspot.token.refreshed",
            extra={**self._log_fields, "reason": reason, "expires_in": expires_in},
        )
        await self._notify()
        return self._access_token

    async def _adopt_stored_grant(self) -> bool:
        """Take the stored grant if it holds another refresh token; whether it was taken.

        The adopted access token stays only if it is unexpired and not the current one (which
        was rejected, or is expired).
        """
        if self._reload_grant is None:
            return False
        try:
            stored = await self._reload_grant()
        except Exception as exc:  # reloading is best effort; the refusal stands
            self._logger.warning(
                "hubspot.token.reload_failed",
                extra={**self._log_fields, "error": type(exc).__name__},
            )
            return False
        if stored is None or reveal_secret(stored.refresh_token) == reveal_secret(
            self._refresh_token
        ):
            return False
        previous = self._access_token
        self._refresh_token = stored.refresh_token
        same = previous is not None and reveal_secret(previous) == reveal_secret(
            stored.access_token
        )
        self._access_token = None if same else stored.access_token
        self._expires_at = None if same else stored.expires_at
        self._renew_at = None if same else stored.expires_at - self._margin
        self._logger.info("hubspot.token.grant_reloaded", extra=self._log_fields)
        return True

    async def _notify(self) -> None:
        hook = self._on_token_refreshed
        if hook is None or self._access_token is None or self._expires_at is None:
            return
        refreshed = RefreshedToken(self._access_token, self._expires_at, self._refresh_token)
        try:
            await hook(refreshed)
        except Exception as exc:  # the token works; persisting it is best effort
            self._logger.warning(
                "hubspot.token.hook_failed",
                extra={**self._log_fields, "error": type(exc).__name__},
            )


def _json_or_none(response: httpx.Response) -> object:
    try:
        parsed: object = response.json()
    except ValueError:  # not JSON, or not UTF-8
        return None
    return parsed


def _parse_grant(body: object) -> tuple[str | None, float | None, str | None]:
    if not isinstance(body, dict):
        return None, None, None
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    refresh = body.get("refresh_token")
    expiry: float | None = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expiry = float(expires_in) if math.isfinite(expires_in) and expires_in > 0 else None
    return (
        access if isinstance(access, str) and access else None,
        expiry,
        refresh if isinstance(refresh, str) and refresh else None,
    )


def token_source_for(
    config: HubSpotConnectionConfig,
    *,
    http_client: httpx.AsyncClient,
    clock: Clock,
    logger: logging.Logger,
    log_fields: Mapping[str, Any] | None = None,
    on_token_refreshed: TokenRefreshedHook | None = None,
    reload_grant: GrantReloadHook | None = None,
) -> PrivateAppToken | OAuthTokenSource:
    """The token source ``config.auth`` asks for (called once per sink setup)."""
    auth = config.auth
    if not isinstance(auth, HubSpotOAuth):
        return PrivateAppToken(auth.token)
    return OAuthTokenSource(
        http_client=http_client,
        token_url=f"{config.api_root}{_OAUTH_GRANT_PATH}",
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        refresh_token=auth.refresh_token,
        access_token=auth.access_token,
        expires_at=auth.expires_at,
        clock=clock,
        logger=logger,
        log_fields=log_fields,
        on_token_refreshed=on_token_refreshed,
        reload_grant=reload_grant,
    )
