"""One partner object read (``GET``), paced by a token bucket and retried a bounded number of times.

Used by the connectors' :class:`~connectors.base.inbound.PartnerCompanyReader` implementations.
:func:`read_json` sends one ``GET`` with the connection's token source's headers and returns
the decoded JSON object, or ``None`` on 404. Outcomes:

- 401: the token source may renew once (an OAuth token refused early); refused again, or a
  static token refused, is :class:`~connectors.base.inbound.PartnerReadError` ``auth_failed``;
  so is a token source that cannot give credentials at all (an OAuth refresh refused even
  after reloading the stored grant), at once; a refresh that failed for now (5xx, timeout)
  counts as a transient failure of the read;
- timeouts, network errors, 408/423/425/429 and 5xx (the kit's ``TransientError``) are retried
  up to ``attempts`` times in all, each wait the partner's ``Retry-After`` (already capped by
  the kit) or a doubling backoff, **capped at** ``max_wait_seconds``; after the last attempt,
  ``PartnerReadError("failed")``;
- any other status, or a body that is not a JSON object, is ``PartnerReadError("failed")``
  at once (retrying will not change it).

So one read waits at most ``attempts * max_wait_seconds`` plus the requests' own timeouts: the
agent's partition is never held indefinitely by a partner that keeps answering 429.

Pacing: before each request the reader takes one token from its bucket, waiting for it (at most
``max_wait_seconds``, else the attempt counts as a transient failure). A reader's time (pacing,
retry waits, token expiry) comes from one injected :class:`~connectors.base.context.Clock`,
re-exported here with the real :class:`~connectors.base.context.SystemClock` for the service.

Building a reader: each connector's ``reader_for(settings, setup)`` answers the reader for a
connection's opened ``settings`` (its connector block: ``auth``, ``base_url``...), or ``None``
for an OAuth connection when ``setup`` has no grant store; it raises
``pydantic.ValidationError`` (no input echoed) if the settings are not valid. It validates the
settings (:meth:`ReaderSetup.config`), picks the token source (:meth:`ReaderSetup.oauth` for an
OAuth connection) and calls :meth:`PacedReader.paced`. :class:`ReaderSetup` is what the service
gives every connector: the shared HTTP client, the network policy, the clock (pacing, retry
waits, token expiry) and, for an OAuth connection, the connection's
:class:`~connectors.base.oauth.GrantStore`. An OAuth connection is read with the connector's
own :class:`~connectors.base.oauth.OAuthTokenSource` subclass, the one its delivery sink uses,
handed that grant store: a renewal by the reader is saved where the sink finds it, a refresh
refused because the sink rotated the refresh token reloads the sink's grant once, and a refusal
that stands is ``PartnerReadError("auth_failed")``. Without a grant store an OAuth connection
has no reader (``reader_for`` answers ``None``): a reader renewing on its own could strand the
sink's rotated refresh token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self, TypeVar

import httpx

from connectors.base.config import ConnectionConfig
from connectors.base.context import Clock, SystemClock
from connectors.base.errors import AuthenticationError, ConnectorError, TransientError
from connectors.base.http import (
    endpoint_label,
    http_client_factory,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.inbound import PartnerReadError
from connectors.base.oauth import GrantStore, TokenSource, TokenSourceOptions
from connectors.base.ratelimit import RatePolicy, TokenBucket

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_MAX_WAIT_SECONDS",
    "READ_RATE_PER_SECOND",
    "Clock",
    "PacedReader",
    "ReaderSetup",
    "SystemClock",
    "read_json",
    "reader_bucket",
    "reader_http_client",
    "text_field",
]

READ_TIMEOUT_SECONDS = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_WAIT_SECONDS = 5.0
_FIRST_BACKOFF_SECONDS = 0.5

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")
ConfigT = TypeVar("ConfigT", bound=ConnectionConfig)


def reader_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client readers share in one worker: the kit's (timeouts, no redirects, no proxies
    from the environment), each request bounded by :data:`READ_TIMEOUT_SECONDS`."""
    return http_client_factory(
        timeout_seconds=READ_TIMEOUT_SECONDS, max_connections=4, transport=transport
    )


async def read_json(
    client: httpx.AsyncClient,
    url: str | Callable[[], str],
    *,
    partner: str,
    tokens: TokenSource,
    rate: RatePolicy,
    params: dict[str, str] | None = None,
    extra_headers: dict[str, str] | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Any] | None:
    """The JSON object at ``url``, or ``None`` if the partner answers 404 (see the docstring).

    ``url`` may be a function, asked after the token source gave the request's headers (a
    renewal may move the account's API host).
    """
    backoff = _FIRST_BACKOFF_SECONDS
    renewed = False
    rejected: dict[str, str] | None = None  # the headers a 401 answered: renew before retrying
    attempt = 0
    headers: dict[str, str] = {}
    while True:
        attempt += 1
        try:
            if rejected is not None:
                used, rejected = rejected, None
                if not await _credentials(tokens.renew_after_rejection(used)):
                    raise PartnerReadError("auth_failed", "the partner refused the credentials")
            await _pace(rate, partner=partner, max_wait_seconds=max_wait_seconds, sleep=sleep)
            headers = {**(extra_headers or {}), **await _credentials(tokens.headers())}
            target = url if isinstance(url, str) else url()
            endpoint = endpoint_label(target, include_path=False)
            with translate_http_errors(partner=partner, endpoint=endpoint):
                response = await client.get(target, params=params, headers=headers)
                if response.status_code == httpx.codes.NOT_FOUND:
                    return None
                raise_for_response(response, partner=partner, endpoint=endpoint)
                body = response.content
        except AuthenticationError as exc:  # the partner's answer to the read itself
            if renewed:
                msg = "the partner refused the credentials"
                raise PartnerReadError("auth_failed", msg) from exc
            renewed, rejected = True, headers
            attempt -= 1
            continue
        except TransientError as exc:
            if attempt >= attempts:
                msg = f"still failing after {attempts} attempts"
                raise PartnerReadError("failed", msg) from exc
            hint = exc.retry_after if exc.retry_after is not None else backoff
            await sleep(min(hint, max_wait_seconds))
            backoff = min(backoff * 2, max_wait_seconds)
            continue
        except ConnectorError as exc:
            raise PartnerReadError("failed", "the partner refused the read") from exc
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise PartnerReadError("failed", "the partner's answer is not JSON") from exc
        if not isinstance(decoded, dict):
            raise PartnerReadError("failed", "the partner's answer is not a JSON object")
        return decoded


async def _pace(rate: RatePolicy, *, partner: str, max_wait_seconds: float, sleep: Sleep) -> None:
    """Take one token from ``rate``, waiting at most ``max_wait_seconds`` for it."""
    wait = rate.try_acquire()
    if wait <= 0:
        return
    if wait > max_wait_seconds:
        raise TransientError("rate limit wait too long", partner=partner)
    await sleep(wait)
    if rate.try_acquire() > 0:
        raise TransientError("rate limit still exhausted", partner=partner)


async def _credentials(asked: Awaitable[_T]) -> _T:
    """What the token source answered; a refusal to renew (an OAuth refresh refused even after
    reloading the stored grant) is final for this read, not a 401 to renew after."""
    try:
        return await asked
    except AuthenticationError as exc:
        msg = "the partner refused to renew the credentials"
        raise PartnerReadError("auth_failed", msg) from exc


READ_RATE_PER_SECOND: Final[float] = 1.0
"""A reader's own pace per connection and worker (a tenth of the partners' smallest
documented burst limit), with a burst of :data:`_READ_BURST`."""
_READ_BURST: Final[float] = 2.0


def reader_bucket(connection_rate: float | None, clock: Callable[[], float]) -> TokenBucket:
    """A reader's bucket: :data:`READ_RATE_PER_SECOND`, or the connection's own
    ``rate_limit_per_second`` when that is lower."""
    rate = (
        READ_RATE_PER_SECOND
        if connection_rate is None
        else min(connection_rate, READ_RATE_PER_SECOND)
    )
    return TokenBucket(rate=rate, per_seconds=1.0, burst=_READ_BURST, clock=clock)


def text_field(data: dict[str, Any], name: str, limit: int) -> str | None:
    """The trimmed string ``data[name]``, cut at ``limit`` (``None``: absent, blank or not text)."""
    value = data.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReaderSetup:
    """What a connector's ``reader_for`` gets besides the settings (see the module docstring).

    ``grants`` is the connection's grant store (``None``: OAuth connections are not read);
    ``log_fields`` are the connection's coordinates for the token source's logs.
    """

    client: httpx.AsyncClient
    allow_private_networks: bool = False
    grants: GrantStore | None = None
    clock: Clock = field(default_factory=SystemClock)
    log_fields: Mapping[str, Any] = field(default_factory=dict)

    def config(self, config_class: type[ConfigT], settings: Mapping[str, Any]) -> ConfigT:
        """``settings`` validated as ``config_class`` under this setup's network policy; raises
        ``pydantic.ValidationError`` (no input echoed) if they are not valid."""
        return config_class.validate_for_connection(
            dict(settings), allow_private_networks=self.allow_private_networks
        )

    def oauth(
        self, partner: str, source: Callable[[TokenSourceOptions], TokenSource]
    ) -> TokenSource | None:
        """The OAuth token source ``source`` builds from this setup's clock, grant store and
        log fields, or ``None`` when there is no grant store (the connection is not read)."""
        if self.grants is None:
            return None
        return source(
            {
                "clock": self.clock,
                "store": self.grants,
                "logger": logging.getLogger(f"connectors.{partner}.reader"),
                "log_fields": self.log_fields,
            }
        )


class PacedReader:
    """What a connector's company reader shares: one connection's token, its own pace and the
    bounded retries of :func:`read_json`; a subclass names its ``partner`` and builds URLs.

    ``api_root`` may be a function, asked before each request (a partner that assigns the
    account's API host in its OAuth grant moves it on a renewal).
    """

    partner: str = ""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_root: str | Callable[[], str],
        tokens: TokenSource,
        rate: RatePolicy | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._api_root = api_root
        self._tokens = tokens
        self._clock = clock or SystemClock()
        self._rate = rate or reader_bucket(None, self._clock.monotonic)
        self._attempts = attempts
        self._max_wait = max_wait_seconds

    @classmethod
    def paced(
        cls,
        setup: ReaderSetup,
        tokens: TokenSource | None,
        *,
        api_root: str | Callable[[], str],
        connection_rate: float | None,
    ) -> Self | None:
        """A reader with ``setup``'s client and clock, paced by :func:`reader_bucket`
        (``None`` without ``tokens``: an OAuth connection and no grant store)."""
        if tokens is None:
            return None
        return cls(
            setup.client,
            api_root=api_root,
            tokens=tokens,
            rate=reader_bucket(connection_rate, setup.clock.monotonic),
            clock=setup.clock,
        )

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """``GET`` the API root + ``path``: the JSON object, or ``None`` for a 404."""
        root = self._api_root

        def url() -> str:
            return f"{(root if isinstance(root, str) else root()).rstrip('/')}{path}"

        return await read_json(
            self._client,
            url,
            partner=self.partner,
            tokens=self._tokens,
            rate=self._rate,
            params=params,
            attempts=self._attempts,
            max_wait_seconds=self._max_wait,
            sleep=self._clock.sleep,
        )
