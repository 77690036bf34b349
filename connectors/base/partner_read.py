"""One partner object read (``GET``), paced by a token bucket and retried a bounded number of times.

Used by the connectors' :class:`~connectors.base.inbound.PartnerCompanyReader` implementations.
:func:`read_json` sends one ``GET`` with the connection's token source's headers and returns
the decoded JSON object, or ``None`` on 404. Outcomes:

- 401: the token source may renew once (an OAuth token refused early); refused again, or a
  static token refused, is :class:`~connectors.base.inbound.PartnerReadError` ``auth_failed``;
- timeouts, network errors, 408/423/425/429 and 5xx (the kit's ``TransientError``) are retried
  up to ``attempts`` times in all, each wait the partner's ``Retry-After`` (already capped by
  the kit) or a doubling backoff, **capped at** ``max_wait_seconds``; after the last attempt,
  ``PartnerReadError("failed")``;
- any other status, or a body that is not a JSON object, is ``PartnerReadError("failed")``
  at once (retrying will not change it).

So one read waits at most ``attempts * max_wait_seconds`` plus the requests' own timeouts: the
agent's partition is never held indefinitely by a partner that keeps answering 429.

Pacing: before each request the reader takes one token from its bucket, waiting for it (at most
``max_wait_seconds``, else the attempt counts as a transient failure).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx

from connectors.base.errors import AuthenticationError, ConnectorError, TransientError
from connectors.base.http import (
    endpoint_label,
    http_client_factory,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.inbound import PartnerReadError
from connectors.base.oauth import TokenSource
from connectors.base.ratelimit import RatePolicy, TokenBucket

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_MAX_WAIT_SECONDS",
    "READ_RATE_PER_SECOND",
    "PacedReader",
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


def reader_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client readers share in one worker: the kit's (timeouts, no redirects, no proxies
    from the environment), each request bounded by :data:`READ_TIMEOUT_SECONDS`."""
    return http_client_factory(
        timeout_seconds=READ_TIMEOUT_SECONDS, max_connections=4, transport=transport
    )


async def read_json(
    client: httpx.AsyncClient,
    url: str,
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
    """The JSON object at ``url``, or ``None`` if the partner answers 404 (see the docstring)."""
    endpoint = endpoint_label(url, include_path=False)
    backoff = _FIRST_BACKOFF_SECONDS
    renewed = False
    attempt = 0
    headers: dict[str, str] = {}
    while True:
        attempt += 1
        try:
            wait = rate.try_acquire()
            if wait > 0:
                if wait > max_wait_seconds:
                    raise TransientError("rate limit wait too long", partner=partner)
                await sleep(wait)
                if rate.try_acquire() > 0:
                    raise TransientError("rate limit still exhausted", partner=partner)
            headers = {**(extra_headers or {}), **await tokens.headers()}
            with translate_http_errors(partner=partner, endpoint=endpoint):
                response = await client.get(url, params=params, headers=headers)
                if response.status_code == httpx.codes.NOT_FOUND:
                    return None
                raise_for_response(response, partner=partner, endpoint=endpoint)
                body = response.content
        except AuthenticationError as exc:
            if not renewed and await tokens.renew_after_rejection(headers):
                renewed = True
                attempt -= 1
                continue
            raise PartnerReadError("auth_failed", "the partner refused the credentials") from exc
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


class PacedReader:
    """What a connector's company reader shares: one connection's token, its own pace and the
    bounded retries of :func:`read_json`; a subclass names its ``partner`` and builds URLs."""

    partner: str = ""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_root: str,
        tokens: TokenSource,
        rate: RatePolicy | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._api_root = api_root.rstrip("/")
        self._tokens = tokens
        self._rate = rate or reader_bucket(None, clock)
        self._attempts = attempts
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """``GET`` the API root + ``path``: the JSON object, or ``None`` for a 404."""
        return await read_json(
            self._client,
            f"{self._api_root}{path}",
            partner=self.partner,
            tokens=self._tokens,
            rate=self._rate,
            params=params,
            attempts=self._attempts,
            max_wait_seconds=self._max_wait,
            sleep=self._sleep,
        )
