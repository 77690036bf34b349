"""API-token and OAuth authentication, with the token endpoint mocked."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import AuthenticationError, TransientError, http_client_factory
from connectors.base.oauth import OAuthGrant
from connectors.pipedrive.auth import ApiTokenAuth, PipedriveOAuthSource
from connectors.pipedrive.config import PipedriveOAuth
from tests.unit.connectors.fakes import FakeClock, MemoryGrantStore
from tests.unit.connectors.pipedrive.fakes import MockPipedrive

TOKEN_PATH = "/oauth/token"


def _config(**overrides: Any) -> PipedriveOAuth:
    values: dict[str, Any] = {
        "type": "oauth",
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "refresh-1",
        "api_domain": "https://acme.pipedrive.com",
    }
    values.update(overrides)
    return PipedriveOAuth.model_validate(values)


def _granted(access: str = "access-1", *, expires_in: Any = 3599, **extra: Any) -> httpx.Response:
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": "refresh-2",
        "scope": "contacts:full",
        "api_domain": "https://acme-eu.pipedrive.com",
    }
    body.update(extra)
    return httpx.Response(200, json=body)


@asynccontextmanager
async def _oauth(
    api: MockPipedrive,
    *,
    clock: FakeClock | None = None,
    store: MemoryGrantStore | None = None,
    **config: Any,
) -> AsyncIterator[PipedriveOAuthSource]:
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        yield PipedriveOAuthSource(
            _config(**config),
            http_client=http,
            clock=clock or FakeClock(),
            store=store,
        )


async def test_an_api_token_goes_in_the_x_api_token_header() -> None:
    auth = ApiTokenAuth(SecretStr("tok"))
    assert await auth.headers() == {"x-api-token": "tok"}
    assert await auth.renew_after_rejection({"x-api-token": "tok"}) is False
    assert auth.api_domain is None


async def test_the_first_request_refreshes_with_basic_client_credentials() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted())
    store = MemoryGrantStore()
    clock = FakeClock()
    async with _oauth(api, clock=clock, store=store) as auth:
        assert await auth.headers() == {"authorization": "Bearer access-1"}
        assert auth.api_domain == "https://acme-eu.pipedrive.com"
    (request,) = api.requests
    assert str(request.url) == "https://oauth.pipedrive.com/oauth/token"
    expected = base64.b64encode(b"cid:csecret").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-1"],
    }
    (tokens,) = store.saved
    assert tokens.access_token.get_secret_value() == "access-1"
    assert tokens.refresh_token.get_secret_value() == "refresh-2"
    assert tokens.expires_at == clock.wall + 3599


async def test_a_valid_access_token_is_used_without_refreshing() -> None:
    api = MockPipedrive()
    clock = FakeClock()
    async with _oauth(
        api, clock=clock, access_token="stored-access", expires_at=clock.wall + 3000
    ) as auth:
        assert await auth.headers() == {"authorization": "Bearer stored-access"}
    assert api.requests == []


async def test_the_token_is_refreshed_ahead_of_expiry() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted("access-2"))
    clock = FakeClock()
    async with _oauth(
        api, clock=clock, access_token="stored-access", expires_at=clock.wall + 600
    ) as auth:
        assert await auth.headers() == {"authorization": "Bearer stored-access"}
        clock.advance(600 - 119)  # inside the refresh margin, still valid
        assert await auth.headers() == {"authorization": "Bearer access-2"}
        assert auth.refreshes == 1
        assert await auth.headers() == {"authorization": "Bearer access-2"}
    assert len(api.requests) == 1


async def test_the_rotated_refresh_token_is_used_next_time() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted("access-1", expires_in=60), _granted("access-2"))
    clock = FakeClock()
    async with _oauth(api, clock=clock) as auth:
        await auth.headers()
        clock.advance(31)  # past half of its 60 s life (shorter than the margin): renew
        await auth.headers()
    assert [parse_qs(r.content.decode())["refresh_token"] for r in api.requests] == [
        ["refresh-1"],
        ["refresh-2"],
    ]


async def test_concurrent_requests_share_one_refresh() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted())
    async with _oauth(api) as auth:
        results = await asyncio.gather(*(auth.headers() for _ in range(5)))
    assert {r["authorization"] for r in results} == {"Bearer access-1"}
    assert len(api.requests) == 1


async def test_after_a_401_the_token_is_refreshed_once() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted("access-2"))
    clock = FakeClock()
    async with _oauth(
        api, clock=clock, access_token="revoked", expires_at=clock.wall + 3000
    ) as auth:
        used = await auth.headers()
        assert await auth.renew_after_rejection(used) is True
        assert await auth.headers() == {"authorization": "Bearer access-2"}
        # Another request rejected with the old token does not refresh again.
        assert await auth.renew_after_rejection(used) is True
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_a_refused_refresh_token_needs_reauthorisation(status: int) -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, httpx.Response(status, json={"error": "invalid_grant"}))
    async with _oauth(api) as auth:
        with pytest.raises(AuthenticationError, match="refused") as caught:
            await auth.headers()
    assert caught.value.status_code == status


async def test_a_token_endpoint_outage_is_transient() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, httpx.Response(503))
    async with _oauth(api) as auth:
        with pytest.raises(TransientError):
            await auth.headers()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json=[]),
        _granted(access=""),
        _granted(expires_in="3599"),
        _granted(expires_in=0),
    ],
)
async def test_an_unreadable_token_response_is_transient(answer: httpx.Response) -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, answer)
    async with _oauth(api) as auth:
        with pytest.raises(TransientError, match="unreadable"):
            await auth.headers()


async def test_an_api_domain_outside_pipedrive_is_ignored() -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted(api_domain="https://evil.example"))
    async with _oauth(api) as auth:
        await auth.headers()
        assert auth.api_domain is None


async def test_the_token_url_is_overridable() -> None:
    api = MockPipedrive()
    api.on("POST", "/sandbox/token", _granted())
    async with _oauth(api, token_url="https://oauth.pipedrive.com/sandbox/token") as auth:
        await auth.headers()
    assert api.requests[0].url.path == "/sandbox/token"


async def test_a_failing_store_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    api = MockPipedrive()
    api.on("POST", TOKEN_PATH, _granted())

    broken = MemoryGrantStore(fail_save=True)
    async with http_client_factory(transport=httpx.MockTransport(api)) as http:
        auth = PipedriveOAuthSource(_config(), http_client=http, clock=FakeClock(), store=broken)
        with caplog.at_level(logging.INFO):
            assert await auth.headers() == {"authorization": "Bearer access-1"}
    assert "pipedrive.oauth.store_failed" in caplog.messages
    logged = " ".join(str(vars(r)) for r in caplog.records)
    for secret in ("access-1", "refresh-1", "refresh-2", "csecret"):
        assert secret not in logged


class RotatingPipedrive:
    """Pipedrive's token endpoint: every refresh token is good for a single refresh."""

    def __init__(self, first: str = "refresh-1", *, expires_in: int = 3599) -> None:
        self.valid = {first}
        self.expires_in = expires_in
        self.refreshes = 0
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == TOKEN_PATH
        token = parse_qs(request.content.decode())["refresh_token"][0]
        if token not in self.valid:
            self.refused += 1
            return httpx.Response(400, json={"success": False, "error": "invalid_grant"})
        self.valid.discard(token)
        self.refreshes += 1
        rotated = f"refresh-r{self.refreshes}"
        self.valid.add(rotated)
        return httpx.Response(
            200,
            json={
                "access_token": f"access-r{self.refreshes}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "refresh_token": rotated,
                "api_domain": "https://acme-eu.pipedrive.com",
            },
        )


def _sharing(
    http: httpx.AsyncClient, clock: FakeClock, store: MemoryGrantStore, **config: Any
) -> PipedriveOAuthSource:
    return PipedriveOAuthSource(_config(**config), http_client=http, clock=clock, store=store)


async def test_a_refused_refresh_takes_the_tokens_another_sink_rotated() -> None:
    partner, clock, store = RotatingPipedrive(), FakeClock(), MemoryGrantStore()
    async with http_client_factory(transport=httpx.MockTransport(partner)) as http:
        first, second = _sharing(http, clock, store), _sharing(http, clock, store)
        assert await first.headers() == {"authorization": "Bearer access-r1"}
        # refresh-1 is spent: the second sink's refresh is refused, then it reloads
        assert await second.headers() == {"authorization": "Bearer access-r1"}
        assert second.api_domain == "https://acme-eu.pipedrive.com"
        assert (partner.refreshes, partner.refused, store.loads) == (1, 1, 1)

        clock.advance(3600)  # both expired: each refreshes in turn, neither needs reauth
        assert await second.headers() == {"authorization": "Bearer access-r2"}
        assert await first.headers() == {"authorization": "Bearer access-r2"}
        assert (partner.refreshes, partner.refused) == (2, 2)
        assert store.latest is not None
        assert store.latest.refresh_token.get_secret_value() == "refresh-r2"


async def test_an_expired_reloaded_token_is_refreshed_with_the_stored_refresh_token() -> None:
    partner, clock, store = RotatingPipedrive(), FakeClock(), MemoryGrantStore()
    async with http_client_factory(transport=httpx.MockTransport(partner)) as http:
        first, second = _sharing(http, clock, store), _sharing(http, clock, store)
        await first.headers()
        clock.advance(7200)
        assert await second.headers() == {"authorization": "Bearer access-r2"}
    assert partner.refreshes == 2


async def test_after_a_401_the_reloaded_token_is_retried() -> None:
    partner, clock, store = RotatingPipedrive(), FakeClock(), MemoryGrantStore()
    held = {"access_token": "revoked", "expires_at": clock.wall + 3000}
    async with http_client_factory(transport=httpx.MockTransport(partner)) as http:
        first, second = _sharing(http, clock, store, **held), _sharing(http, clock, store, **held)
        used = await second.headers()
        assert await first.renew_after_rejection(used) is True
        assert await second.renew_after_rejection(used) is True
        assert await second.headers() == {"authorization": "Bearer access-r1"}
    assert (partner.refreshes, partner.refused) == (1, 1)


async def test_nothing_new_to_reload_needs_reauthorisation() -> None:
    partner, clock, store = RotatingPipedrive(first="other"), FakeClock(), MemoryGrantStore()
    async with http_client_factory(transport=httpx.MockTransport(partner)) as http:
        auth = _sharing(http, clock, store)
        with pytest.raises(AuthenticationError, match="refused"):
            await auth.headers()
        store.latest = OAuthGrant(
            access_token=SecretStr("access-x"),
            refresh_token=SecretStr("refresh-stale"),
            expires_at=clock.wall - 1,
            api_domain=None,
        )
        with pytest.raises(AuthenticationError, match="refused"):
            await auth.headers()  # the stored refresh token is refused too
    assert (store.loads, partner.refused, partner.refreshes) == (2, 3, 0)
