"""Bearer tokens: private app tokens as is, OAuth refresh ahead of expiry and after a 401."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import AuthenticationError, TransientError, http_client_factory
from connectors.base.oauth import OAuthGrant, bearer
from connectors.hubspot.auth import HubSpotOAuthSource, PrivateAppToken
from connectors.hubspot.config import HubSpotOAuth
from tests.unit.connectors.fakes import FakeClock, MemoryGrantStore

TOKEN_URL = "https://api.hubapi.com/oauth/v1/token"
Handler = Callable[[httpx.Request], httpx.Response]


class TokenEndpoint:
    """A mock ``/oauth/v1/token``: hands out ``at-1``, ``at-2``, ... valid ``expires_in``."""

    def __init__(self, *, expires_in: int = 1800, respond: Handler | None = None) -> None:
        self.forms: list[dict[str, str]] = []
        self.expires_in = expires_in
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url == TOKEN_URL
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if self._respond is not None:
            return self._respond(request)
        return httpx.Response(
            200,
            json={
                "token_type": "bearer",
                "access_token": f"at-{len(self.forms)}",
                "refresh_token": "rt-rotated",
                "expires_in": self.expires_in,
            },
        )


def _oauth(*, access_token: str | None = None, expires_at: float | None = None) -> HubSpotOAuth:
    """The installation's credentials as the connection stores them."""
    return HubSpotOAuth.model_validate(
        {
            "type": "oauth",
            "client_id": "client-1",
            "client_secret": "cs-secret",
            "refresh_token": "rt-secret",
            "access_token": access_token,
            "expires_at": expires_at,
        }
    )


async def _token(source: HubSpotOAuthSource) -> str:
    """The access token the source's next request would carry."""
    return (await source.headers())["authorization"].removeprefix("Bearer ")


class _Hook:
    """A grant store that hands every saved grant to ``hook``."""

    def __init__(self, hook: Callable[[OAuthGrant], object] | None) -> None:
        self._hook = hook

    async def save(self, grant: OAuthGrant) -> None:
        if self._hook is not None:
            self._hook(grant)

    async def reload(self) -> OAuthGrant | None:
        return None


def _source(
    endpoint: TokenEndpoint,
    clock: FakeClock,
    *,
    access_token: str | None = None,
    expires_at: float | None = None,
    hook: Callable[[OAuthGrant], object] | None = None,
) -> HubSpotOAuthSource:
    return HubSpotOAuthSource(
        _oauth(access_token=access_token, expires_at=expires_at),
        http_client=http_client_factory(transport=httpx.MockTransport(endpoint)),
        token_url=TOKEN_URL,
        clock=clock,
        logger=logging.getLogger("test.hubspot.auth"),
        log_fields={"connection_id": "c_hs"},
        store=_Hook(hook),
    )


async def test_private_app_token_is_used_as_is_and_cannot_be_renewed() -> None:
    source = PrivateAppToken(SecretStr("pat-1"))
    assert await source.headers() == {"authorization": "Bearer pat-1"}
    assert await source.renew_after_rejection(bearer(SecretStr("pat-1"))) is False


async def test_first_use_refreshes_with_the_refresh_token_grant() -> None:
    endpoint, clock = TokenEndpoint(), FakeClock()
    refreshed: list[OAuthGrant] = []
    source = _source(endpoint, clock, hook=refreshed.append)

    token = await _token(source)
    again = await _token(source)

    assert token == again == "at-1"
    assert endpoint.forms == [
        {
            "grant_type": "refresh_token",
            "client_id": "client-1",
            "client_secret": "cs-secret",
            "refresh_token": "rt-secret",
        }
    ]
    assert source.expires_at == clock.wall + 1800
    assert len(refreshed) == 1
    assert refreshed[0].access_token.get_secret_value() == "at-1"
    assert refreshed[0].expires_at == clock.wall + 1800
    assert refreshed[0].refresh_token.get_secret_value() == "rt-rotated"


async def test_a_stored_token_is_used_until_60_seconds_before_it_expires() -> None:
    endpoint, clock = TokenEndpoint(), FakeClock()
    source = _source(endpoint, clock, access_token="stored", expires_at=clock.wall + 120)

    assert await _token(source) == "stored"
    clock.advance(59)
    assert await _token(source) == "stored"
    clock.advance(2)  # 59 s left: inside the margin
    assert await _token(source) == "at-1"
    assert endpoint.forms[0]["refresh_token"] == "rt-secret"
    clock.advance(1800)
    assert await _token(source) == "at-2"
    assert endpoint.forms[1]["refresh_token"] == "rt-rotated"  # HubSpot rotated it


async def test_concurrent_callers_share_one_refresh() -> None:
    endpoint, clock = TokenEndpoint(), FakeClock()
    source = _source(endpoint, clock)
    tokens = await asyncio.gather(*(_token(source) for _ in range(5)))
    assert set(tokens) == {"at-1"}
    assert len(endpoint.forms) == 1


async def test_renew_after_rejection_refreshes_once_per_rejected_token() -> None:
    endpoint, clock = TokenEndpoint(), FakeClock()
    source = _source(endpoint, clock, access_token="stored", expires_at=clock.wall + 1000)

    assert await source.renew_after_rejection(bearer(SecretStr("stored"))) is True
    assert await _token(source) == "at-1"
    # a second caller rejected with the same old token does not refresh again
    assert await source.renew_after_rejection(bearer(SecretStr("stored"))) is True
    assert len(endpoint.forms) == 1


@pytest.mark.parametrize("status", [400, 401])
async def test_a_refused_refresh_token_is_an_authentication_error(status: int) -> None:
    body = {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
    endpoint = TokenEndpoint(respond=lambda _: httpx.Response(status, json=body))
    with pytest.raises(AuthenticationError) as info:
        await _source(endpoint, FakeClock()).headers()
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(503), TransientError),
        (httpx.Response(200, json={"access_token": "x"}), TransientError),
        (httpx.Response(200, text="<html>"), TransientError),
    ],
)
async def test_token_endpoint_outages_and_garbage_are_transient(
    response: httpx.Response, expected: type[Exception]
) -> None:
    endpoint = TokenEndpoint(respond=lambda _: response)
    with pytest.raises(expected):
        await _source(endpoint, FakeClock()).headers()


async def test_a_failing_hook_does_not_fail_the_refresh(caplog: pytest.LogCaptureFixture) -> None:
    def explode(_: OAuthGrant) -> None:
        raise RuntimeError("store down")

    with caplog.at_level(logging.INFO, logger="test.hubspot.auth"):
        token = await _token(_source(TokenEndpoint(), FakeClock(), hook=explode))
    assert token == "at-1"
    assert [r.msg for r in caplog.records] == [
        "hubspot.token.refreshed",
        "hubspot.token.store_failed",
    ]


async def test_logs_never_carry_tokens_or_secrets(caplog: pytest.LogCaptureFixture) -> None:
    endpoint, clock = TokenEndpoint(), FakeClock()
    with caplog.at_level(logging.DEBUG):
        source = _source(endpoint, clock)
        await source.headers()
        await source.renew_after_rejection(bearer(SecretStr("at-1")))
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    for secret in ("at-1", "at-2", "rt-secret", "rt-rotated", "cs-secret"):
        assert secret not in logged


class RotatingPartner:
    """A token endpoint that rotates refresh tokens: each one is good for a single renewal."""

    def __init__(self, first: str = "rt-secret", *, expires_in: int = 1800) -> None:
        self.valid = {first}
        self.expires_in = expires_in
        self.renewals = 0
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form["refresh_token"] not in self.valid:
            self.refused += 1
            return httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN"})
        self.valid.discard(form["refresh_token"])
        self.renewals += 1
        rotated = f"rt-{self.renewals}"
        self.valid.add(rotated)
        return httpx.Response(
            200,
            json={
                "access_token": f"at-{self.renewals}",
                "refresh_token": rotated,
                "expires_in": self.expires_in,
            },
        )


def _sharing(
    partner: RotatingPartner,
    clock: FakeClock,
    store: MemoryGrantStore,
    *,
    access_token: str | None = None,
    expires_at: float | None = None,
) -> HubSpotOAuthSource:
    """One sink's token source of a connection whose grant lives in ``store``."""
    return HubSpotOAuthSource(
        _oauth(access_token=access_token, expires_at=expires_at),
        http_client=http_client_factory(transport=httpx.MockTransport(partner)),
        token_url=TOKEN_URL,
        clock=clock,
        logger=logging.getLogger("test.hubspot.auth"),
        log_fields={"connection_id": "c_hs"},
        store=store,
    )


async def test_a_refused_renewal_takes_the_grant_another_sink_renewed() -> None:
    partner, clock, store = RotatingPartner(), FakeClock(), MemoryGrantStore()
    first, second = _sharing(partner, clock, store), _sharing(partner, clock, store)

    assert await _token(first) == "at-1"
    # the second sink still holds rt-secret, which the partner has rotated away
    assert await _token(second) == "at-1"
    assert (partner.renewals, partner.refused, store.loads) == (1, 1, 1)

    clock.advance(1800)  # at-1 expired: each renews in turn, neither is parked
    assert await _token(second) == "at-2"
    assert await _token(first) == "at-2"
    assert (partner.renewals, partner.refused) == (2, 2)
    assert store.latest is not None
    assert store.latest.refresh_token.get_secret_value() == "rt-2"


async def test_an_expired_reloaded_grant_is_renewed_with_its_refresh_token() -> None:
    partner, clock, store = RotatingPartner(), FakeClock(), MemoryGrantStore()
    first, second = _sharing(partner, clock, store), _sharing(partner, clock, store)
    await first.headers()
    clock.advance(3600)

    assert await _token(second) == "at-2"
    assert partner.renewals == 2
    assert store.latest is not None
    assert store.latest.refresh_token.get_secret_value() == "rt-2"


async def test_after_a_401_the_reloaded_access_token_is_retried() -> None:
    partner, clock, store = RotatingPartner(), FakeClock(), MemoryGrantStore()
    first, second = (
        _sharing(partner, clock, store, access_token="at-0", expires_at=clock.time() + 1800)
        for _ in range(2)
    )

    assert await first.renew_after_rejection(bearer(SecretStr("at-0"))) is True
    assert await second.renew_after_rejection(bearer(SecretStr("at-0"))) is True
    assert await _token(second) == "at-1"
    assert (partner.renewals, partner.refused) == (1, 1)


async def test_nothing_new_in_the_store_is_an_authentication_error() -> None:
    partner, clock, store = RotatingPartner(first="rt-other"), FakeClock(), MemoryGrantStore()
    source = _sharing(partner, clock, store)
    with pytest.raises(AuthenticationError):
        await source.headers()
    store.latest = OAuthGrant(
        access_token=SecretStr("at-x"),
        expires_at=clock.time() + 60,
        refresh_token=SecretStr("rt-secret"),
    )
    with pytest.raises(AuthenticationError):
        await source.headers()  # the stored grant holds the same, refused, refresh token
    assert (store.loads, partner.refused, partner.renewals) == (2, 2, 0)


async def test_a_reloaded_refresh_token_refused_too_is_an_authentication_error() -> None:
    partner, clock, store = RotatingPartner(first="rt-other"), FakeClock(), MemoryGrantStore()
    store.latest = OAuthGrant(
        access_token=SecretStr("at-x"),
        expires_at=clock.time() - 1,
        refresh_token=SecretStr("rt-stale"),
    )
    with pytest.raises(AuthenticationError):
        await _sharing(partner, clock, store).headers()
    assert (store.loads, partner.refused) == (1, 2)  # reloaded once, renewed once more


async def test_a_failing_reload_keeps_the_refusal(caplog: pytest.LogCaptureFixture) -> None:
    partner, clock = RotatingPartner(first="rt-other"), FakeClock()

    class Broken(MemoryGrantStore):
        async def reload(self) -> OAuthGrant | None:
            msg = "redis is down"
            raise ConnectionError(msg)

    source = HubSpotOAuthSource(
        _oauth(),
        http_client=http_client_factory(transport=httpx.MockTransport(partner)),
        token_url=TOKEN_URL,
        clock=clock,
        logger=logging.getLogger("test.hubspot.auth"),
        store=Broken(),
    )
    with pytest.raises(AuthenticationError):
        await source.headers()
    assert "hubspot.token.reload_failed" in caplog.messages
