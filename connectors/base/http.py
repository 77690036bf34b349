"""The one place where httpx and HTTP statuses become connector outcomes.

- :func:`translate_http_errors` wraps a request and maps httpx exceptions;
- :func:`raise_for_response` maps a response status;
- :func:`http_client_factory` builds every ``httpx.AsyncClient`` connectors use (timeouts,
  no redirects, no environment proxies or ``.netrc``), and is where the transport is chosen
  (tests pass an ``httpx.MockTransport``).

Status mapping (Standard Webhooks "Delivery success and failure", HubSpot error handling):

==================  =====================================================================
2xx                 success
3xx                 ``PermanentError("redirect not followed")``: redirects are never followed
401                 ``AuthenticationError``
408, 425            ``TransientError`` (``Retry-After`` honoured)
410                 ``EndpointGoneError``
423                 ``TransientError`` with ``retry_after`` of at least 2 s (HubSpot lock)
429, 502, 504       ``BackpressureError``: ``Retry-After``, else ``default_backpressure_seconds``
other 5xx           ``TransientError`` (``Retry-After`` honoured)
other 4xx, others   ``PermanentError``
==================  =====================================================================

``Retry-After`` is never trusted as given: :func:`parse_retry_after` turns it into at most
:data:`~connectors.base.errors.MAX_RETRY_AFTER_SECONDS` (one hour), whatever the partner sends
(``1e308``, ``inf``, a date in the year 9999); unusable values count as absent.

Reasons never include response bodies: they may carry personal data.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Final, Protocol, TypedDict

import httpx
from httpx_aiohttp import AiohttpTransport

from connectors.base.errors import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    EndpointGoneError,
    PermanentError,
    TransientError,
)

__all__ = [
    "DEFAULT_BACKPRESSURE_SECONDS",
    "USER_AGENT",
    "HttpClientFactory",
    "endpoint_label",
    "http_client_factory",
    "parse_retry_after",
    "raise_for_response",
    "translate_http_errors",
]


def _package_version() -> str:
    try:
        return metadata.version("queast-integrations")
    except metadata.PackageNotFoundError:
        return "0.0.0"


USER_AGENT: Final[str] = f"queast-integrations/{_package_version()}"
DEFAULT_BACKPRESSURE_SECONDS: Final[float] = 5.0
_LOCKED_MIN_RETRY_SECONDS: Final[float] = 2.0
_RETRYABLE_CLIENT_STATUSES: Final[frozenset[int]] = frozenset({408, 425})
_THROTTLE_STATUSES: Final[frozenset[int]] = frozenset({429, 502, 504})


class _ErrorContext(TypedDict):
    partner: str
    endpoint: str
    status_code: int


def endpoint_label(url: httpx.URL | str, *, include_path: bool = True) -> str:
    """Return ``host[:port]/path`` for logs and errors: no scheme, credentials or query.

    Pass ``include_path=False`` when the path itself may hold a secret (tenant-supplied
    webhook URLs often embed tokens in the path).
    """
    parsed = httpx.URL(url)
    host = parsed.host
    if ":" in host:
        host = f"[{host}]"
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    return f"{host}{parsed.path}" if include_path else host


@contextmanager
def translate_http_errors(*, partner: str, endpoint: str) -> Iterator[None]:
    """Map httpx exceptions raised inside the block to connector errors.

    Use it around the request *and* any reading of the response body. Timeouts, network
    and proxy errors and a server closing the connection are transient; an unsupported
    scheme, an invalid URL, a request we could not encode and a redirect loop are
    permanent. The httpx exception is chained (``raise ... from exc``) but its message is
    not copied into ``reason``: it can contain the URL.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(
            f"timeout ({type(exc).__name__})", partner=partner, endpoint=endpoint
        ) from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise PermanentError(
            f"request not sendable ({type(exc).__name__})", partner=partner, endpoint=endpoint
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise PermanentError("redirect not followed", partner=partner, endpoint=endpoint) from exc
    except httpx.RequestError as exc:
        # NetworkError, RemoteProtocolError, ProxyError, DecodingError.
        raise TransientError(
            f"connection failed ({type(exc).__name__})", partner=partner, endpoint=endpoint
        ) from exc
    except httpx.InvalidURL as exc:
        raise PermanentError("invalid URL", partner=partner, endpoint=endpoint) from exc


def parse_retry_after(
    value: str | None,
    *,
    now: Callable[[], float] = time.time,
    max_seconds: float = MAX_RETRY_AFTER_SECONDS,
) -> float | None:
    """Parse a ``Retry-After`` value into a bounded number of seconds from now.

    Accepts delta-seconds (``"120"``, also tolerating a decimal part or an exponent) and an
    HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``), the latter measured against ``now``
    (wall-clock Unix seconds, injectable for tests). The answer is always in
    ``[0, max_seconds]`` (one hour by default) or ``None``, and parsing never raises:

    - a number or a date further away than ``max_seconds`` (``1e308``, ``inf``, a huge
      integer, the year 9999) gives ``max_seconds``: the partner asked for a long wait, and
      gets the longest we grant;
    - a date in the past gives ``0.0``;
    - anything else (``nan``, a negative number, a date that does not exist, garbage,
      ``None``, an empty value) gives ``None``: no usable hint, so the caller's default applies.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or seconds < 0:
            return None
        return min(seconds, max_seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            return None
        wait = when.timestamp() - now()
    except (TypeError, ValueError, OverflowError, IndexError):
        # ValueError: no such date or offset; OverflowError: a year or offset past C's ints.
        return None
    if math.isnan(wait):
        return None
    return min(max(0.0, wait), max_seconds)


def raise_for_response(
    response: httpx.Response,
    *,
    partner: str,
    endpoint: str,
    clock: Callable[[], float] = time.time,
    default_backpressure_seconds: float = DEFAULT_BACKPRESSURE_SECONDS,
) -> None:
    """Return if ``response`` is a 2xx; otherwise raise the outcome its status means.

    See the module docstring for the table. ``clock`` is the wall clock used to turn an
    HTTP-date ``Retry-After`` into seconds. The ``Retry-After`` read here is bounded by
    :func:`parse_retry_after` (at most :data:`MAX_RETRY_AFTER_SECONDS`), so no answer a
    partner can give makes this raise anything but a connector error.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    context = _ErrorContext(partner=partner, endpoint=endpoint, status_code=status)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now=clock)
    if 300 <= status < 400:
        raise PermanentError("redirect not followed", **context)
    if status == 401:
        raise AuthenticationError("unauthorized", **context)
    if status == 410:
        raise EndpointGoneError("endpoint gone", **context)
    if status == 423:
        raise TransientError(
            "resource locked",
            retry_after=max(_LOCKED_MIN_RETRY_SECONDS, retry_after or 0.0),
            **context,
        )
    if status in _THROTTLE_STATUSES:
        raise BackpressureError(
            "rate limited" if status == 429 else "partner overloaded",
            retry_after=default_backpressure_seconds if retry_after is None else retry_after,
            **context,
        )
    if status in _RETRYABLE_CLIENT_STATUSES:
        raise TransientError("request timeout or too early", retry_after=retry_after, **context)
    if 500 <= status < 600:
        raise TransientError("server error", retry_after=retry_after, **context)
    if 400 <= status < 500:
        raise PermanentError("client error", **context)
    raise PermanentError("unexpected status", **context)


class HttpClientFactory(Protocol):
    """What a connector calls to get its HTTP client (see :func:`http_client_factory`)."""

    def __call__(
        self,
        *,
        timeout_seconds: float = ...,
        connect_timeout_seconds: float = ...,
        max_connections: int = ...,
        headers: dict[str, str] | None = ...,
    ) -> httpx.AsyncClient: ...


def http_client_factory(
    *,
    timeout_seconds: float = 15.0,
    connect_timeout_seconds: float = 5.0,
    max_connections: int = 10,
    headers: dict[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    proxy: str | None = None,
) -> httpx.AsyncClient:
    """Build the ``httpx.AsyncClient`` a connector uses; the caller closes it.

    Redirects are never followed. ``trust_env`` is off, so no proxy, CA bundle or
    ``.netrc`` credentials are picked up from the environment: pass ``proxy`` explicitly
    (for instance an egress proxy such as smokescreen). ``transport`` replaces the network
    (``httpx.MockTransport`` in tests).
    """
    if timeout_seconds <= 0 or connect_timeout_seconds <= 0:
        msg = "timeouts must be positive"
        raise ValueError(msg)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    if transport is None and proxy is None:
        transport = _default_transport(limits)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            timeout_seconds, connect=min(connect_timeout_seconds, timeout_seconds)
        ),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT, **(headers or {})},
        transport=transport,
        proxy=proxy,
    )


def _default_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """aiohttp's connection handling under httpx's API.

    Chosen by measurement (``bench/delivery.py``): on two cores over loopback, POSTing small
    JSON bodies at concurrency 16, httpx's own transport gave about 1,000 requests/s and this
    one about 4,900/s. Connectors keep httpx's API (and ``MockTransport`` in tests); only this
    line knows which transport carries the requests. Redirects are not followed
    (``allow_redirects=False``), environment proxies are not read, and aiohttp errors are
    mapped to httpx's exception types, so :func:`translate_http_errors` still applies.
    With an explicit ``proxy``, httpx's own transport is used.
    """
    return AiohttpTransport(limits=limits)
