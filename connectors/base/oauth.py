"""The OAuth kit: one grant type, one token-source interface, one refresh-and-persist hook.

Every connector that authenticates its requests uses the same three pieces:

- :class:`OAuthGrant`: what a refresh hands out (access token, refresh token, expiry) plus
  ``api_domain``, the API host a partner may assign to the account in its token response
  (Pipedrive's ``api_domain``; ``None`` where the partner has one fixed host).
- :class:`TokenSource`: where a client gets the headers that authenticate its next request
  (:meth:`~TokenSource.headers`), and what it asks once after a 401
  (:meth:`~TokenSource.renew_after_rejection`, given the headers that were rejected: whether
  retrying the request may help). :class:`StaticToken` is a credential that never changes
  (an API key, a private app token); :class:`OAuthTokenSource` is an OAuth installation.
- :class:`OAuthCredentials`: what a connection's stored OAuth settings hold (client id and
  secret, refresh token, optionally an access token and its expiry); each connector's OAuth
  config block satisfies it, and a token source starts from it.
- :class:`GrantStore`: where renewed grants are kept between sinks (``save`` after every
  refresh, ``reload`` for the latest one another sink may have saved). The service provides
  it through :attr:`~connectors.base.context.SinkContext.grant_store`.

:class:`OAuthTokenSource` holds the refresh logic once. A partner specialises it with its
name, its refresh margin, how the client authenticates at the token endpoint
(:attr:`~OAuthTokenSource.client_auth`, RFC 6749 section 2.3.1: client id and secret in the
form, or HTTP Basic) and, if the partner assigns API hosts, which ``api_domain`` it accepts
(:meth:`~OAuthTokenSource.accept_api_domain`).

- Ahead of expiry: :meth:`~OAuthTokenSource.headers` refreshes once the access token is
  within the refresh margin of its expiry, or when there is none yet. For a token that lives
  less than twice the margin the margin is half its lifetime (otherwise every request would
  refresh it). A stored access token without an expiry is used until it is rejected.
- After a 401: :meth:`~OAuthTokenSource.renew_after_rejection` refreshes once for the
  rejected token; if another caller has replaced it meanwhile, that one is retried instead.
- Concurrent callers share one refresh (one lock per source; callers re-check after taking
  it).
- The refresh is ``POST token_url`` with the form ``grant_type=refresh_token`` and the
  refresh token, ``accept: application/json``. The answer's ``access_token`` and positive
  ``expires_in`` are required (otherwise ``TransientError``, as is any 5xx or transport
  failure); a missing ``refresh_token`` keeps the current one.
- A refused refresh (400/401/403, e.g. ``invalid_grant``) first asks the store once for the
  latest grant: another sink of the same connection (another worker, during a rebalance) may
  have refreshed meanwhile, and a partner that rotates refresh tokens then refuses the one
  this source holds. A stored grant with another refresh token is adopted: its access token
  is used as is when it is unexpired and not the one held (rejected or expired), otherwise it
  is refreshed once with the stored refresh token. Only when there is nothing new to adopt,
  or that refresh is refused too, is the refusal an ``AuthenticationError`` (the service parks
  the connection as ``needs_reauth``). A failing ``reload`` counts as nothing new.
- Every successful refresh is handed to ``GrantStore.save``; a failing save is logged and
  does not fail the request (the grant works in memory).

Logs are ``{log_prefix}.refreshed`` (with ``reason`` and ``expires_in``),
``.refresh_refused``, ``.grant_reloaded``, ``.reload_failed``, ``.store_failed`` and
``.api_domain_refused``, with the connection's coordinates; never a token or secret.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol, TypedDict

import httpx
from pydantic import SecretStr

from connectors.base.config import reveal_secret
from connectors.base.errors import AuthenticationError, TransientError
from connectors.base.http import endpoint_label, raise_for_response, translate_http_errors

if TYPE_CHECKING:  # the context module refers to GrantStore
    from connectors.base.context import Clock, SinkContext

__all__ = [
    "GrantStore",
    "OAuthCredentials",
    "OAuthGrant",
    "OAuthSourceOptions",
    "OAuthTokenSource",
    "StaticToken",
    "TokenSource",
    "TokenSourceOptions",
    "bearer",
    "options_from",
]

_REFUSED_REFRESH_STATUSES: Final[frozenset[int]] = frozenset({400, 401, 403})


@dataclass(frozen=True, kw_only=True, slots=True)
class OAuthGrant:
    """An OAuth grant: the access token, the refresh token to use from now on, when the
    access token expires (Unix seconds) and the API host the partner assigned, if any."""

    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: float
    api_domain: str | None = None


class OAuthCredentials(Protocol):
    """What a connection's OAuth settings hold: the client, the refresh token and, if one is
    stored, the access token with its expiry (Unix seconds). Each connector's config block
    for OAuth has these fields."""

    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> SecretStr: ...
    @property
    def refresh_token(self) -> SecretStr: ...
    @property
    def access_token(self) -> SecretStr | None: ...
    @property
    def expires_at(self) -> float | None: ...


class GrantStore(Protocol):
    """Where a connection's renewed grants are kept from one sink to the next."""

    async def save(self, grant: OAuthGrant) -> None:
        """Keep ``grant`` as the connection's latest (called after every refresh)."""
        ...

    async def reload(self) -> OAuthGrant | None:
        """The connection's latest saved grant (``None``: none), after a refused refresh."""
        ...


class TokenSource(Protocol):
    """What a client asks of a connection's credentials."""

    @property
    def api_domain(self) -> str | None:
        """The API host the partner assigned in the latest grant, if any."""
        ...

    async def headers(self) -> dict[str, str]:
        """Headers that authenticate the next request.

        Raises ``AuthenticationError`` when no valid credential can be had, and
        ``TransientError``/``BackpressureError`` when a needed refresh failed for now.
        """
        ...

    async def renew_after_rejection(self, used: Mapping[str, str]) -> bool:
        """Called once per request after a 401 answered the ``used`` headers: whether a
        different credential is now available to retry with. Raises like :meth:`headers`."""
        ...


class TokenSourceOptions(TypedDict):
    """What an :class:`OAuthTokenSource` takes from its sink's context."""

    clock: Clock
    store: GrantStore | None
    logger: logging.Logger
    log_fields: Mapping[str, Any]


class OAuthSourceOptions(TypedDict, total=False):
    """The optional keywords of :class:`OAuthTokenSource`, for a subclass to pass on as given."""

    store: GrantStore | None
    refresh_margin_seconds: float | None
    logger: logging.Logger | None
    log_fields: Mapping[str, Any] | None


def options_from(context: SinkContext[Any]) -> TokenSourceOptions:
    """The context's clock, grant store, logger and log fields, for a sink's token source
    (``Source(credentials, token_url=..., http_client=..., **options_from(context))``)."""
    return {
        "clock": context.clock,
        "store": context.grant_store,
        "logger": context.logger,
        "log_fields": context.log_fields(),
    }


def bearer(token: SecretStr) -> dict[str, str]:
    """The ``Authorization: Bearer`` header for ``token``."""
    return {"authorization": f"Bearer {reveal_secret(token)}"}


class StaticToken:
    """A credential that never changes: sent in ``header`` (after ``prefix``); a 401 stands."""

    def __init__(
        self, token: SecretStr, *, header: str = "authorization", prefix: str = "Bearer "
    ) -> None:
        self._token = token
        self._header = header
        self._prefix = prefix

    @property
    def api_domain(self) -> str | None:
        return None

    async def headers(self) -> dict[str, str]:
        return {self._header: f"{self._prefix}{reveal_secret(self._token)}"}

    async def renew_after_rejection(self, used: Mapping[str, str]) -> bool:
        """A static credential cannot be renewed."""
        return False


class OAuthTokenSource:
    """An OAuth installation's access token, refreshed ahead of expiry and after a 401.

    Subclasses set :attr:`partner`, :attr:`log_prefix`, :attr:`default_refresh_margin` and
    :attr:`client_auth`, and override :meth:`accept_api_domain` if the partner assigns API
    hosts. See the module docstring.
    """

    partner: ClassVar[str]
    """The partner's name in errors and the default logger."""
    log_prefix: ClassVar[str]
    """Prefix of the log event names."""
    default_refresh_margin: ClassVar[float] = 60.0
    """Refresh when the access token has less than this many seconds left."""
    client_auth: ClassVar[Literal["form", "basic"]] = "form"
    """How the client authenticates at the token endpoint: ``client_id`` and
    ``client_secret`` in the form, or HTTP Basic."""

    def __init__(
        self,
        credentials: OAuthCredentials,
        *,
        token_url: str,
        http_client: httpx.AsyncClient,
        clock: Clock,
        store: GrantStore | None = None,
        refresh_margin_seconds: float | None = None,
        logger: logging.Logger | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._http = http_client
        self._token_url = token_url
        self._endpoint = endpoint_label(token_url)
        self._client_id = credentials.client_id
        self._client_secret = credentials.client_secret
        self._refresh_token = credentials.refresh_token
        self._access_token = credentials.access_token
        # A stored access token without an expiry is used until the partner rejects it.
        self._expires_at = None if self._access_token is None else credentials.expires_at
        self._margin = (
            self.default_refresh_margin
            if refresh_margin_seconds is None
            else refresh_margin_seconds
        )
        self._renew_at = None if self._expires_at is None else self._expires_at - self._margin
        self._api_domain: str | None = None
        self._clock = clock
        self._store = store
        self._logger = logger or logging.getLogger(f"connectors.{self.partner}")
        self._log_fields = dict(log_fields or {})
        self._lock = asyncio.Lock()
        self.refreshes = 0
        """How many refreshes succeeded (for tests and metrics)."""

    @property
    def expires_at(self) -> float | None:
        """When the current access token expires (Unix seconds), if known."""
        return self._expires_at

    @property
    def api_domain(self) -> str | None:
        """The accepted ``api_domain`` of the latest grant (``None`` before the first)."""
        return self._api_domain

    def accept_api_domain(self, value: object) -> str | None:
        """``value`` (a grant's ``api_domain``) if requests may go there, else ``None``.

        The default ignores it: the partner has one fixed API host.
        """
        return None

    async def headers(self) -> dict[str, str]:
        """A bearer header; refreshes first when the token is missing or about to expire."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():  # another caller may have refreshed meanwhile
                    await self._refresh(reason="expiry")
        return self._bearer()

    async def renew_after_rejection(self, used: Mapping[str, str]) -> bool:
        """Refresh once for the rejected token, unless another caller already replaced it."""
        async with self._lock:
            current = self._access_token
            if (
                current is not None
                and used.get("authorization") != bearer(current)["authorization"]
            ):
                return True
            await self._refresh(reason="rejected")
        return True

    def _fresh(self) -> bool:
        """Whether the access token can be used as it is (an unknown expiry counts as fresh)."""
        if self._access_token is None:
            return False
        return self._renew_at is None or self._clock.time() < self._renew_at

    def _bearer(self) -> dict[str, str]:
        if self._access_token is None:  # _refresh either set one or raised
            raise AuthenticationError("no oauth access token", partner=self.partner)
        return bearer(self._access_token)

    def _event(self, name: str) -> str:
        return f"{self.log_prefix}.{name}"

    async def _post_refresh(self) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": reveal_secret(self._refresh_token)}
        headers = {"accept": "application/json"}
        with translate_http_errors(partner=self.partner, endpoint=self._endpoint):
            if self.client_auth == "basic":
                secret = reveal_secret(self._client_secret)
                basic = httpx.BasicAuth(self._client_id, secret)
                return await self._http.post(
                    self._token_url, data=form, auth=basic, headers=headers
                )
            form["client_id"] = self._client_id
            form["client_secret"] = reveal_secret(self._client_secret)
            return await self._http.post(self._token_url, data=form, headers=headers)

    async def _refresh(self, *, reason: str, reload: bool = True) -> None:
        response = await self._post_refresh()
        if response.status_code in _REFUSED_REFRESH_STATUSES:
            self._logger.warning(
                self._event("refresh_refused"),
                extra={**self._log_fields, "status_code": response.status_code},
            )
            if reload and await self._adopt_stored_grant():
                if not self._fresh():
                    await self._refresh(reason="reloaded", reload=False)
                return
            raise AuthenticationError(
                "oauth refresh token refused",
                partner=self.partner,
                endpoint=self._endpoint,
                status_code=response.status_code,
            )
        raise_for_response(
            response, partner=self.partner, endpoint=self._endpoint, clock=self._clock.time
        )
        now = self._clock.time()
        grant = self._read_grant(response, now=now)
        self._access_token = grant.access_token
        self._refresh_token = grant.refresh_token
        self._expires_at = grant.expires_at
        self._renew_at = grant.expires_at - min(self._margin, (grant.expires_at - now) / 2)
        if grant.api_domain is not None:
            self._api_domain = grant.api_domain
        self.refreshes += 1
        self._logger.info(
            self._event("refreshed"),
            extra={
                **self._log_fields,
                "reason": reason,
                "expires_in": round(grant.expires_at - now),
            },
        )
        await self._save(grant)

    def _read_grant(self, response: httpx.Response, *, now: float) -> OAuthGrant:
        """The grant of a 2xx token response; ``TransientError`` when it is unreadable."""
        unreadable = TransientError(
            "unreadable oauth token response",
            partner=self.partner,
            endpoint=self._endpoint,
            status_code=response.status_code,
        )
        try:
            document = response.json()
        except ValueError:  # not JSON, or not UTF-8
            raise unreadable from None
        if not isinstance(document, dict):
            raise unreadable
        access = document.get("access_token")
        expires_in = _positive_seconds(document.get("expires_in"))
        if not isinstance(access, str) or not access or expires_in is None:
            raise unreadable
        refresh = document.get("refresh_token")
        return OAuthGrant(
            access_token=SecretStr(access),
            refresh_token=SecretStr(refresh)
            if isinstance(refresh, str) and refresh
            else self._refresh_token,
            expires_at=now + expires_in,
            api_domain=self.accept_api_domain(document.get("api_domain")),
        )

    async def _adopt_stored_grant(self) -> bool:
        """Take the stored grant if it holds another refresh token; whether it was taken.

        The adopted access token stays only if it is not the one held (rejected or expired);
        :meth:`_fresh` then tells whether it is still unexpired.
        """
        if self._store is None:
            return False
        try:
            stored = await self._store.reload()
        except Exception as exc:  # reloading is best effort; the refusal stands
            self._logger.warning(
                self._event("reload_failed"),
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
            self._api_domain = self.accept_api_domain(stored.api_domain) or self._api_domain
        self._logger.info(self._event("grant_reloaded"), extra=self._log_fields)
        return True

    async def _save(self, grant: OAuthGrant) -> None:
        if self._store is None:
            return
        try:
            await self._store.save(grant)
        except Exception as exc:  # storing is best effort; the grant works in memory
            self._logger.error(
                self._event("store_failed"),
                extra={**self._log_fields, "error_class": type(exc).__name__},
            )


def _positive_seconds(value: object) -> float | None:
    """``value`` as seconds if it is a positive finite number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else None
