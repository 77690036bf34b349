from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import httpx
import pytest

from connectors.base import PermanentError, TransientError, http_client_factory
from connectors.webhook.client import (
    Resolver,
    WebhookClient,
    check_destination,
    is_public_address,
)
from connectors.webhook.payloads import WebhookRequest
from tests.support.raw_http import RawHttpServer

URL = httpx.URL("https://hooks.example.com/queast?token=abc")

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.7",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.20",
    "169.254.169.254",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "fe80::1",
    "fe80::1%eth0",
    "0.0.0.0",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "224.0.0.251",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "100.64.0.1",
    "192.0.2.1",
    "64:ff9b::a00:1",
    "2002:7f00:1::1",
    "fec0::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


def _resolver(*answers: str) -> tuple[list[tuple[str, int]], Resolver]:
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return list(answers)

    return calls, resolve


@pytest.mark.parametrize("address", REFUSED)
async def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    calls, resolve = _resolver(address)
    with pytest.raises(PermanentError, match="destination address not allowed") as caught:
        await check_destination(URL, allow_private_networks=False, resolver=resolve)
    assert calls == [("hooks.example.com", 443)]
    assert caught.value.endpoint == "hooks.example.com"
    assert "token" not in str(caught.value)


@pytest.mark.parametrize("address", PUBLIC)
async def test_a_public_address_is_allowed(address: str) -> None:
    _, resolve = _resolver(address)
    await check_destination(URL, allow_private_networks=False, resolver=resolve)


@pytest.mark.parametrize("address", REFUSED)
async def test_every_address_is_allowed_with_private_networks(address: str) -> None:
    calls, resolve = _resolver(address)
    await check_destination(URL, allow_private_networks=True, resolver=resolve)
    assert calls == []


async def test_one_private_answer_among_public_ones_is_refused() -> None:
    _, resolve = _resolver("93.184.216.34", "10.0.0.1")
    with pytest.raises(PermanentError):
        await check_destination(URL, allow_private_networks=False, resolver=resolve)


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/hook", "https://[::1]:8443/hook", "http://169.254.169.254/latest"]
)
async def test_an_ip_literal_is_checked_without_resolving(url: str) -> None:
    calls, resolve = _resolver("93.184.216.34")
    with pytest.raises(PermanentError, match="not allowed"):
        await check_destination(httpx.URL(url), allow_private_networks=False, resolver=resolve)
    assert calls == []


async def test_the_port_follows_the_url() -> None:
    calls, resolve = _resolver("8.8.8.8")
    await check_destination(
        httpx.URL("http://hooks.example.com:8080/"), allow_private_networks=False, resolver=resolve
    )
    assert calls == [("hooks.example.com", 8080)]


async def test_a_resolution_failure_is_transient() -> None:
    async def fail(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")

    with pytest.raises(TransientError, match="did not resolve") as caught:
        await check_destination(URL, allow_private_networks=False, resolver=fail)
    assert isinstance(caught.value.__cause__, socket.gaierror)


async def test_an_empty_answer_is_transient() -> None:
    _, resolve = _resolver()
    with pytest.raises(TransientError, match="did not resolve"):
        await check_destination(URL, allow_private_networks=False, resolver=resolve)


def test_is_public_address_on_a_few_literals() -> None:
    assert is_public_address(ipaddress.ip_address("1.1.1.1"))
    assert not is_public_address(ipaddress.ip_address("::ffff:192.168.0.1"))


# --- DNS rebinding: the connection goes to the address that was checked ----------------


def _rebinding_resolver(*answers: str) -> tuple[list[str], Resolver]:
    """A resolver answering ``answers[0]`` first, then ``answers[1]``, and so on."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return [answers[min(len(calls), len(answers)) - 1]]

    return calls, resolve


async def test_a_name_rebinding_after_the_check_cannot_redirect_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two real servers on one port: 127.0.0.1 plays the public address the check accepts,
    # 127.0.0.2 the private one the name rebinds to right after the check.
    monkeypatch.setattr(
        "connectors.webhook.client.is_public_address", lambda a: str(a) == "127.0.0.1"
    )
    public = RawHttpServer(host="127.0.0.1")
    calls, resolve = _rebinding_resolver("127.0.0.1", "127.0.0.2")
    async with (
        public,
        RawHttpServer(host="127.0.0.2", port=public.port) as private,
        http_client_factory(timeout_seconds=5) as http,
    ):
        client = WebhookClient(
            http_client=http,
            url=f"http://hooks.test:{public.port}/hook?token=abc",
            resolver=resolve,
        )
        status = await client.send(WebhookRequest(body=b"{}", headers={}))
        # The next attempt resolves again, sees the private answer and is refused.
        with pytest.raises(PermanentError, match="destination address not allowed"):
            await client.send(WebhookRequest(body=b"{}", headers={}))
    assert status == 200
    assert calls == ["hooks.test", "hooks.test"]
    [seen] = public.seen
    assert seen.request_line == "POST /hook?token=abc HTTP/1.1"
    assert seen.headers["host"] == f"hooks.test:{public.port}"
    assert private.seen == []


async def test_with_private_networks_allowed_nothing_is_checked_or_pinned() -> None:
    calls, resolve = _resolver("10.0.0.1")
    async with RawHttpServer() as peer, http_client_factory(timeout_seconds=5) as http:
        client = WebhookClient(
            http_client=http,
            url=f"http://localhost:{peer.port}/hook",
            allow_private_networks=True,
            resolver=resolve,
        )
        assert await client.send(WebhookRequest(body=b"{}", headers={})) == 200
    assert calls == []
    assert len(peer.seen) == 1


async def test_the_checked_addresses_are_returned_once_each() -> None:
    _, resolve = _resolver("93.184.216.34", "93.184.216.34", "2606:4700:4700::1111")
    checked = await check_destination(URL, allow_private_networks=False, resolver=resolve)
    assert checked == ("93.184.216.34", "2606:4700:4700::1111")
