"""OAuth access tokens that live less than the renewal margin: renewed at half-life, not on
every request (HubSpot's and Pipedrive's token sources alike)."""

from __future__ import annotations

import itertools
import logging
from urllib.parse import parse_qs

import httpx

from connectors.base import http_client_factory
from connectors.hubspot.auth import HubSpotOAuthSource
from connectors.hubspot.config import HubSpotOAuth
from connectors.pipedrive.auth import PipedriveOAuthSource
from connectors.pipedrive.config import PipedriveOAuth
from tests.unit.connectors.fakes import FakeClock


class TokenEndpoint:
    """Hands out ``at-1``, ``at-2``, ... that live ``expires_in`` seconds."""

    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in
        self.refresh_tokens: list[str] = []
        self._numbers = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.refresh_tokens.append(form["refresh_token"])
        return httpx.Response(
            200,
            json={
                "access_token": f"at-{next(self._numbers)}",
                "refresh_token": "rt-1",
                "expires_in": self.expires_in,
                "api_domain": "https://acme.pipedrive.com",
            },
        )


async def _token(source: HubSpotOAuthSource) -> str:
    """The access token the source's next request would carry."""
    return (await source.headers())["authorization"].removeprefix("Bearer ")


def _hubspot(endpoint: TokenEndpoint, clock: FakeClock) -> HubSpotOAuthSource:
    credentials = HubSpotOAuth.model_validate(
        {"type": "oauth", "client_id": "cid", "client_secret": "cs", "refresh_token": "rt-0"}
    )
    return HubSpotOAuthSource(
        credentials,
        http_client=http_client_factory(transport=httpx.MockTransport(endpoint)),
        token_url="https://api.hubapi.com/oauth/v1/token",
        clock=clock,
        logger=logging.getLogger("test"),
    )


def _pipedrive(endpoint: TokenEndpoint, clock: FakeClock) -> PipedriveOAuthSource:
    config = PipedriveOAuth.model_validate(
        {
            "type": "oauth",
            "client_id": "cid",
            "client_secret": "cs",
            "refresh_token": "rt-0",
            "api_domain": "https://acme.pipedrive.com",
        }
    )
    return PipedriveOAuthSource(
        config,
        http_client=http_client_factory(transport=httpx.MockTransport(endpoint)),
        clock=clock,
    )


async def test_hubspot_renews_a_4_second_token_at_half_life() -> None:
    endpoint, clock = TokenEndpoint(expires_in=4), FakeClock()
    source = _hubspot(endpoint, clock)

    tokens = [await _token(source) for _ in range(5)]
    clock.advance(1.9)
    tokens.append(await _token(source))
    clock.advance(0.2)  # 1.9 s left: renew
    tokens.append(await _token(source))

    assert tokens == ["at-1"] * 6 + ["at-2"]
    assert endpoint.refresh_tokens == ["rt-0", "rt-1"]


async def test_hubspot_keeps_the_60_second_margin_for_long_lived_tokens() -> None:
    endpoint, clock = TokenEndpoint(expires_in=1800), FakeClock()
    source = _hubspot(endpoint, clock)
    await source.headers()
    clock.advance(1800 - 61)
    assert await _token(source) == "at-1"
    clock.advance(2)
    assert await _token(source) == "at-2"


async def test_pipedrive_renews_a_4_second_token_at_half_life() -> None:
    endpoint, clock = TokenEndpoint(expires_in=4), FakeClock()
    auth = _pipedrive(endpoint, clock)

    headers = [await auth.headers() for _ in range(5)]
    clock.advance(1.9)
    headers.append(await auth.headers())
    clock.advance(0.2)
    headers.append(await auth.headers())

    assert [h["authorization"] for h in headers] == ["Bearer at-1"] * 6 + ["Bearer at-2"]
    assert auth.refreshes == 2
    assert endpoint.refresh_tokens == ["rt-0", "rt-1"]


async def test_pipedrive_keeps_the_120_second_margin_for_long_lived_tokens() -> None:
    endpoint, clock = TokenEndpoint(expires_in=3599), FakeClock()
    auth = _pipedrive(endpoint, clock)
    await auth.headers()
    clock.advance(3599 - 121)
    assert await auth.headers() == {"authorization": "Bearer at-1"}
    clock.advance(2)
    assert await auth.headers() == {"authorization": "Bearer at-2"}
