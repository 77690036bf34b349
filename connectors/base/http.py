"""The one place where httpx and HTTP statuses become connector outcomes.

- :func:`translate_http_errors` wraps a request and maps httpx exceptions;
- :func:`raise_for_response` maps a response status;
- :func:`http_client_factory` builds every ``httpx.AsyncClient`` connectors use (timeouts,
  a total deadline per request, no redirects, no environment proxies or ``.netrc``), and is
  where the transport is chosen (tests pass an ``httpx.MockTransport``);
- :data:`CONNECT_TO_EXTENSION` pins the addresses a request may connect to (the webhook
  connector's SSRF guard resolves and checks once, then connects to what it checked).

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

import asyncio
import email.utils
import ipaddress
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from typing import Final, Protocol, TypedDict

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
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
    "CONNECT_TO_EXTENSION",
    "DEFAULT_BACKPRESSURE_SECONDS",
    "USER_AGENT",
    "HttpClientFactory",
    "RequestDeadlineExceeded",
    "endpoint_label",
    "header_number",
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

    ``timeout_seconds`` bounds each wait for the peer (connect, write, read) *and* each
    request as a whole, from sending it to the last byte of its response body the caller
    reads: a peer that drips one byte a second cannot hold a request, or the lane sending
    it, for longer. Running out raises :class:`RequestDeadlineExceeded`, a
    ``httpx.TimeoutException`` and so a ``TransientError`` under
    :func:`translate_http_errors`. Connectors pass their connection's ``timeout_seconds``
    (webhooks: 15 s by default, at most 30 s).

    Redirects are never followed. ``trust_env`` is off, so no proxy, CA bundle or
    ``.netrc`` credentials are picked up from the environment: pass ``proxy`` explicitly
    (for instance an egress proxy such as smokescreen; it then does its own DNS, and
    :data:`CONNECT_TO_EXTENSION` is not honoured). ``transport`` replaces the network
    (``httpx.MockTransport`` in tests); the deadline applies to it as well.
    """
    if timeout_seconds <= 0 or connect_timeout_seconds <= 0:
        msg = "timeouts must be positive"
        raise ValueError(msg)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    if transport is None:
        transport = (
            _default_transport(limits)
            if proxy is None
            else httpx.AsyncHTTPTransport(limits=limits, proxy=proxy, trust_env=False)
        )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            timeout_seconds, connect=min(connect_timeout_seconds, timeout_seconds)
        ),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT, **(headers or {})},
        transport=DeadlineTransport(transport, total_seconds=timeout_seconds),
    )


def _default_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """aiohttp's connection handling under httpx's API.

    Chosen by measurement (``bench/delivery.py``): on two cores over loopback, POSTing small
    JSON bodies at concurrency 16, httpx's own transport gave about 1,000 requests/s and this
    one about 4,900/s. Connectors keep httpx's API (and ``MockTransport`` in tests); only this
    line knows which transport carries the requests. Redirects are not followed
    (``allow_redirects=False``), environment proxies are not read, and aiohttp errors are
    mapped to httpx's exception types, so :func:`translate_http_errors` still applies.
    It honours :data:`CONNECT_TO_EXTENSION` and keeps no DNS cache (see
    :class:`PinningAiohttpTransport`). With an explicit ``proxy``, httpx's own transport is
    used.
    """
    return PinningAiohttpTransport(limits=limits)


# --- a total deadline per request ---------------------------------------------------------


class RequestDeadlineExceeded(httpx.TimeoutException):
    """A request, from sending it to reading its response body, outlasted its deadline."""


class DeadlineTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so every request has a total deadline of ``total_seconds``.

    The deadline is fixed when the request starts and covers the inner transport's send
    and every later read of the response body (the stream is wrapped), so it holds however
    the peer paces its bytes. The event loop's clock measures it.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, total_seconds: float) -> None:
        if total_seconds <= 0:
            msg = "total_seconds must be positive"
            raise ValueError(msg)
        self._inner = inner
        self._total = total_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = asyncio.get_running_loop().time() + self._total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._inner.handle_async_request(request)
        except TimeoutError as exc:
            raise RequestDeadlineExceeded("request deadline exceeded", request=request) from exc
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _DeadlineStream(response.stream, deadline=deadline, request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DeadlineStream(httpx.AsyncByteStream):
    """A response body whose every read ends by the request's deadline."""

    def __init__(
        self, inner: httpx.AsyncByteStream, *, deadline: float, request: httpx.Request
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = aiter(self._inner)
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise RequestDeadlineExceeded(
                    "request deadline exceeded", request=self._request
                ) from exc
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- connecting to the addresses that were checked ----------------------------------------

CONNECT_TO_EXTENSION: Final[str] = "qi.connect_to"
"""Request extension: the IP addresses (a tuple of strings) the default transport connects to
for the request's host, instead of resolving the name again. The ``Host`` header, TLS SNI and
certificate verification still use the URL's host name."""

_PINNED: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar(
    "qi_pinned_addresses", default=None
)


def _normal_host(host: str) -> str:
    return host.rstrip(".").lower()


class PinnedAddressResolver(AbstractResolver):
    """An aiohttp resolver that answers with the addresses pinned for the current request.

    :class:`PinningAiohttpTransport` sets the pin (host and addresses) around each request
    that carries :data:`CONNECT_TO_EXTENSION`; the connector resolves in that request's
    task, so the pin is bound per request. A request without a pin is resolved by
    ``fallback`` (the system resolver). A pinned request for another host, or whose
    addresses do not fit the asked family, fails with ``OSError`` (a connection error):
    nothing else is ever looked up for it.
    """

    def __init__(self, fallback: AbstractResolver | None = None) -> None:
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = _PINNED.get()
        if pinned is None:
            if self._fallback is None:
                self._fallback = aiohttp.DefaultResolver()
            return await self._fallback.resolve(host, port, family)
        pinned_host, addresses = pinned
        if _normal_host(host) != pinned_host:
            msg = "the connection's host is not the pinned host"
            raise OSError(msg)
        results: list[ResolveResult] = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            address_family = (
                socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
            )
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=address_family,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            msg = "no pinned address of the requested family"
            raise OSError(msg)
        return results

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()


class PinningAiohttpTransport(AiohttpTransport):
    """The aiohttp transport, connecting to the addresses a request pins.

    Its connector keeps no DNS cache (``use_dns_cache=False``) and resolves through
    :class:`PinnedAddressResolver`: a request carrying :data:`CONNECT_TO_EXTENSION` connects
    only to those addresses, with the URL's host name kept for ``Host``, SNI and certificate
    verification; other requests are resolved afresh for each new connection. ``ssl_context``
    replaces the default verification context (tests with a private CA). A kept-alive
    connection is reused only for the same host, port and scheme; it was opened to an
    address that was pinned then.
    """

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(
            verify=True if ssl_context is None else ssl_context,
            trust_env=False,
            limits=limits,
            client=self._open_session,
        )

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 100,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            use_dns_cache=False,
            resolver=PinnedAddressResolver(),
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pin = _pin_of(request)
        token = _PINNED.set(pin)
        try:
            return await super().handle_async_request(request)
        finally:
            _PINNED.reset(token)


def _pin_of(request: httpx.Request) -> tuple[str, tuple[str, ...]] | None:
    value = request.extensions.get(CONNECT_TO_EXTENSION)
    if value is None:
        return None
    if not isinstance(value, tuple | list) or not value:
        msg = f"{CONNECT_TO_EXTENSION} must be a non-empty tuple of IP addresses"
        raise httpx.LocalProtocolError(msg)
    addresses = tuple(str(v) for v in value)
    return _normal_host(request.url.raw_host.decode("ascii")), addresses


def header_number(
    headers: httpx.Headers, name: str, *, maximum: float, minimum: float = 0.0
) -> float | None:
    """A partner's numeric header (rate limits, costs) in ``[minimum, maximum]``; never raises.

    Garbage, NaN and values below ``minimum`` are ignored (``None``); larger values,
    infinity included, are ``maximum``: a partner's number is bounded before it is used (a
    reset of ``1e308`` s would close a bucket for ever, a limit of ``1e-300`` would set its
    rate to nothing).
    """
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if math.isnan(value) or value < minimum:
        return None
    return min(value, maximum)
