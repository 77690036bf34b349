"""The HTTP side of webhook delivery: a destination guard and one POST per attempt.

SSRF guard: before each request the destination host is resolved once and every address it
resolves to must be public. Loopback, private, link-local, multicast, reserved,
unspecified and shared (CGNAT) addresses are refused with
``PermanentError("destination address not allowed")``, IPv4 and IPv6 alike, including
IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 and Teredo). ``allow_private_networks`` (local development and tests) skips it.

DNS rebinding: the request then connects to the addresses that were checked, and only to
them. They travel with the request (``connectors.base.http.CONNECT_TO_EXTENSION``) to the
default transport, whose resolver answers from them instead of looking the name up again and
which keeps no DNS cache; the URL's host name is kept for the ``Host`` header, TLS SNI and
certificate verification. A name whose answer changes between the check and the connection
therefore cannot steer the request elsewhere. With ``allow_private_networks`` nothing is
checked and nothing is pinned. Behind an explicit egress proxy (``http_client_factory``'s
``proxy``), the proxy resolves and must do the guarding itself (smokescreen does).
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
from connectors.base.http import (
    CONNECT_TO_EXTENSION,
    endpoint_label,
    raise_for_response,
    translate_http_errors,
)
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
) -> tuple[str, ...] | None:
    """Refuse a destination that is, or resolves to, a non-public address.

    Returns the addresses that were checked (the one to connect to), or ``None`` when
    ``allow_private_networks`` is true: then nothing is resolved or checked. Raises
    ``PermanentError("destination address not allowed")`` if any address is not public,
    ``TransientError`` if the name does not resolve (DNS may recover; the retry budget
    bounds it).
    """
    if allow_private_networks:
        return None
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
    checked: list[str] = []
    for candidate in candidates:
        address = _parse_address(candidate)
        if address is None or not is_public_address(address):
            raise PermanentError(
                "destination address not allowed", partner=_PARTNER, endpoint=endpoint
            )
        if str(address) not in checked:
            checked.append(str(address))
    return tuple(checked)


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

    async def send(self, request: WebhookRequest) -> int:
        """Check the destination, POST ``request`` once to the checked address, return the 2xx.

        Called by the sink for each attempt. The SSRF guard (:func:`check_destination`)
        resolves the host and the connection goes to the addresses it checked (see the
        module docstring). Redirects are not followed. Raises the guard's refusal, or the
        outcome of any other status or of a transport failure (see
        ``connectors.base.http``; a request outlasting the client's deadline is a
        ``TransientError``). At most 64 KiB of the response body is read, and never
        interpreted: receivers only answer with a status.
        """
        addresses = await check_destination(
            self._url,
            allow_private_networks=self._allow_private_networks,
            resolver=self._resolver,
        )
        extensions = {} if addresses is None else {CONNECT_TO_EXTENSION: addresses}
        with translate_http_errors(partner=_PARTNER, endpoint=self.endpoint):
            http_request = self._http.build_request(
                "POST",
                self._url,
                content=request.body,
                headers=dict(request.headers),
                extensions=extensions,
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
