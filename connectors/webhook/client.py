"""The HTTP side of webhook delivery: a destination guard and one POST per attempt.

SSRF guard: before each request the destination host is resolved and every address it
resolves to must be public. Loopback, private, link-local, multicast, reserved,
unspecified and shared (CGNAT) addresses are refused with
``PermanentError("destination address not allowed")``, IPv4 and IPv6 alike, including
IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 and Teredo). ``allow_private_networks`` (local development and tests) skips it.

Known gap, DNS rebinding: the check resolves the name, then httpx resolves it again when
it connects, so a name whose answer changes between the two lookups can slip through. The
fix is a transport that connects to the checked address (pinned IP with the original
``Host`` header and SNI), or an egress proxy such as smokescreen; both are later work.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import httpx

from connectors.base.errors import PermanentError, TransientError
from connectors.base.http import endpoint_label, raise_for_response, translate_http_errors
from connectors.webhook.payloads import WebhookRequest

__all__ = [
    "Resolver",
    "WebhookClient",
    "check_destination",
    "is_public_address",
    "resolve_host",
]

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolve ``(host, port)`` to IP address strings (injected in tests: no DNS)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PARTNER: Final[str] = "webhook"
_NAT64: Final[ipaddress.IPv6Network] = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED_ADDRESS_SPACE: Final[ipaddress.IPv4Network] = ipaddress.IPv4Network("100.64.0.0/10")
_MAX_RESPONSE_BYTES_READ: Final[int] = 64 * 1024


async def resolve_host(host: str, port: int) -> Sequence[str]:
    """Resolve with the event loop's ``getaddrinfo`` (TCP addresses only)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether a webhook may be sent to ``address`` without ``allow_private_networks``."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    elif address in _SHARED_ADDRESS_SPACE:
        return False
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


async def check_destination(
    url: httpx.URL,
    *,
    allow_private_networks: bool,
    resolver: Resolver = resolve_host,
) -> None:
    """Refuse a destination that is, or resolves to, a non-public address.

    Raises ``PermanentError("destination address not allowed")`` if any address is not
    public, ``TransientError`` if the name does not resolve (DNS may recover; the retry
    budget bounds it). Does nothing when ``allow_private_networks`` is true.
    """
    if allow_private_networks:
        return
    host = url.host
    endpoint = endpoint_label(url, include_path=False)
    literal = _parse_address(host)
    if literal is not None:
        candidates: Sequence[str] = [host]
    else:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            candidates = await resolver(host, port)
        except OSError as exc:  # socket.gaierror included
            raise TransientError(
                "destination did not resolve", partner=_PARTNER, endpoint=endpoint
            ) from exc
        if not candidates:
            raise TransientError("destination did not resolve", partner=_PARTNER, endpoint=endpoint)
    for candidate in candidates:
        address = _parse_address(candidate)
        if address is None or not is_public_address(address):
            raise PermanentError(
                "destination address not allowed", partner=_PARTNER, endpoint=endpoint
            )


class WebhookClient:
    """Sends signed webhook requests to one endpoint.

    Owns neither the ``httpx.AsyncClient`` (the sink builds and closes it) nor any retry:
    each :meth:`send` is one attempt whose failure is raised as a connector error.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        url: str,
        allow_private_networks: bool = False,
        resolver: Resolver = resolve_host,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http_client
        self._url = httpx.URL(url)
        self._allow_private_networks = allow_private_networks
        self._resolver = resolver
        self._wall_clock = wall_clock
        self.endpoint = endpoint_label(self._url, include_path=False)
        """Host (and port) only: the path or query may hold a token."""

    async def check_destination(self) -> None:
        """The SSRF guard for this endpoint; see :func:`check_destination`."""
        await check_destination(
            self._url,
            allow_private_networks=self._allow_private_networks,
            resolver=self._resolver,
        )

    async def send(self, request: WebhookRequest) -> int:
        """POST ``request`` once and return the 2xx status.

        Called by the sink for each attempt, after :meth:`check_destination`. Redirects are
        not followed. Raises the outcome of any other status or of a transport failure
        (see ``connectors.base.http``). At most 64 KiB of the response body is read, and
        never interpreted: receivers only answer with a status.
        """
        with translate_http_errors(partner=_PARTNER, endpoint=self.endpoint):
            http_request = self._http.build_request(
                "POST", self._url, content=request.body, headers=dict(request.headers)
            )
            response = await self._http.send(http_request, stream=True, follow_redirects=False)
            try:
                await self._drain(response)
            finally:
                await response.aclose()
        raise_for_response(
            response, partner=_PARTNER, endpoint=self.endpoint, clock=self._wall_clock
        )
        return response.status_code

    @staticmethod
    async def _drain(response: httpx.Response) -> None:
        if response.is_stream_consumed:  # already in memory (e.g. a mock transport)
            return
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= _MAX_RESPONSE_BYTES_READ:
                break
