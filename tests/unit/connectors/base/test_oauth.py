"""The OAuth kit on its own, with a made-up partner: a mock token endpoint, a fake clock and
grant stores in memory stand in for the partner, time and Redis."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import AuthenticationError, TransientError, http_client_factory
from connectors.base.oauth import GrantStore, OAuthGrant, OAuthTokenSource, StaticToken, bearer
from tests.unit.connectors.fakes import FakeClock, MemoryGrantStore

TOKEN_URL = "https://auth.example.com/token"
CLIENT_SECRET = SecretStr("csecret")
FIRST_REFRESH_TOKEN = SecretStr("rt-0")


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A connection's OAuth settings (any object with these fields will do)."""

    client_id: str = "cid"
    client_secret: SecretStr = CLIENT_SECRET
    refresh_token: SecretStr = FIRST_REFRESH_TOKEN
    access_token: SecretStr | None = None
    expires_at: float | None = None


class ExampleOAuth(OAuthTokenSource):
    """A partner that authenticates its client with HTTP Basic and names API hosts under
    ``example.com``."""

    partner: ClassVar[str] = "example"
    log_prefix: ClassVar[str] = "example.oauth"
    default_refresh_margin: ClassVar[float] = 60.0
    client_auth: ClassVar[Literal["form", "basic"]] = "basic"

    def accept_api_domain(self, value: object) -> str | None:
        if isinstance(value, str) and value.endswith(".example.com"):
            return value
        return None


class FormOAuth(ExampleOAuth):
    client_auth: ClassVar[Literal["form", "basic"]] = "form"


class Partner:
    """The partner's token endpoint. Every refresh token is good for one refresh (it rotates
    them: ``rt-N`` comes with ``at-N``); ``gate``, when set, holds each answer until it opens."""

    def __init__(
        self,
        *,
        first: str = "rt-0",
        expires_in: float = 1800,
        rotate: bool = True,
        api_domain: str | None = None,
    ) -> None:
        self.valid = {first}
        self.expires_in = expires_in
        self.rotate = rotate
        self.api_domain = api_domain
        self.requests: list[httpx.Request] = []
        self.refreshed_with: list[str] = []
        self.granted = 0
        self.refused = 0
        self.gate: asyncio.Event | None = None

    def form(self, index: int) -> dict[str, str]:
        content = self.requests[index].content.decode()
        return {k: v[0] for k, v in parse_qs(content).items()}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        token = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}["refresh_token"]
        self.refreshed_with.append(token)
        if token not in self.valid:
            self.refused += 1
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.granted += 1
        body: dict[str, Any] = {"access_token": f"at-{self.granted}", "expires_in": self.expires_in}
        if self.rotate:
            self.valid.discard(token)
            body["refresh_token"] = f"rt-{self.granted}"
            self.valid.add(body["refresh_token"])
        if self.api_domain is not None:
            body["api_domain"] = self.api_domain
        return httpx.Response(200, json=body)


def _source(
    partner: Partner | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    clock: FakeClock,
    *,
    store: GrantStore | None = None,
    kind: type[ExampleOAuth] = ExampleOAuth,
    **options: Any,
) -> ExampleOAuth:
    credentials = Credentials(
        access_token=options.pop("access_token", None),
        expires_at=options.pop("expires_at", None),
    )
    return kind(
        credentials,
        http_client=http_client_factory(transport=httpx.MockTransport(partner)),
        token_url=TOKEN_URL,
        clock=clock,
        store=store,
        logger=logging.getLogger("test.oauth"),
        log_fields={"connection_id": "conn_1"},
        **options,
    )


async def _token(source: ExampleOAuth) -> str:
    return (await source.headers())["authorization"].removeprefix("Bearer ")


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# -- the refresh itself ---------------------------------------------------------------------


async def test_the_refresh_posts_the_refresh_token_grant_with_basic_client_credentials() -> None:
    partner, clock = Partner(), FakeClock()
    assert await _source(partner, clock).headers() == {"authorization": "Bearer at-1"}
    (request,) = partner.requests
    assert str(request.url) == TOKEN_URL
    assert request.headers["accept"] == "application/json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert partner.form(0) == {"grant_type": "refresh_token", "refresh_token": "rt-0"}


async def test_form_client_authentication_sends_the_credentials_in_the_form() -> None:
    partner, clock = Partner(), FakeClock()
    await _source(partner, clock, kind=FormOAuth).headers()
    assert "authorization" not in partner.requests[0].headers
    assert partner.form(0) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-0",
        "client_id": "cid",
        "client_secret": "csecret",
    }


async def test_a_static_token_goes_in_its_header_and_a_401_stands() -> None:
    key = StaticToken(SecretStr("k-1"), header="x-api-key", prefix="")
    assert await key.headers() == {"x-api-key": "k-1"}
    assert await key.renew_after_rejection({"x-api-key": "k-1"}) is False
    assert key.api_domain is None
    assert await StaticToken(SecretStr("pat")).headers() == bearer(SecretStr("pat"))


# -- single flight ----------------------------------------------------------------------------


async def test_concurrent_callers_share_one_refresh() -> None:
    partner, clock = Partner(), FakeClock()
    partner.gate = asyncio.Event()
    source = _source(partner, clock)

    callers = [asyncio.create_task(source.headers()) for _ in range(8)]
    await _settle()
    assert len(partner.requests) == 1  # the others wait for the refresh in flight
    partner.gate.set()
    headers = await asyncio.gather(*callers)

    assert {h["authorization"] for h in headers} == {"Bearer at-1"}
    assert len(partner.requests) == 1
    assert source.refreshes == 1


async def test_concurrent_401s_for_the_same_token_refresh_once() -> None:
    partner, clock = Partner(), FakeClock()
    partner.gate = asyncio.Event()
    source = _source(partner, clock, access_token=SecretStr("at-0"), expires_at=clock.time() + 1800)
    rejected = bearer(SecretStr("at-0"))

    callers = [asyncio.create_task(source.renew_after_rejection(rejected)) for _ in range(5)]
    await _settle()
    partner.gate.set()

    assert await asyncio.gather(*callers) == [True] * 5
    assert await _token(source) == "at-1"
    assert partner.refreshed_with == ["rt-0"]


# -- 401 and the grant another worker stored --------------------------------------------------


async def test_a_401_refreshes_once_then_the_grant_another_worker_stored_wins() -> None:
    partner, clock, store = Partner(), FakeClock(), MemoryGrantStore()
    held: dict[str, Any] = {"access_token": SecretStr("at-0"), "expires_at": clock.time() + 1800}
    this_worker = _source(partner, clock, store=store, **held)
    other_worker = _source(partner, clock, store=store, **held)

    # Both sent at-0 and got a 401; the other worker refreshed first and stored the grant.
    assert await other_worker.renew_after_rejection(bearer(SecretStr("at-0"))) is True
    assert await this_worker.renew_after_rejection(bearer(SecretStr("at-0"))) is True

    assert await _token(this_worker) == "at-1"
    # one refresh each: the other's succeeded, this one's (rt-0, rotated away) was refused
    assert partner.refreshed_with == ["rt-0", "rt-0"]
    assert (partner.granted, partner.refused, store.loads) == (1, 1, 1)
    assert this_worker.refreshes == 0

    clock.advance(1800)  # this worker refreshes next with the refresh token it adopted
    assert await _token(this_worker) == "at-2"
    assert partner.refreshed_with[-1] == "rt-1"


async def test_an_expired_stored_grant_is_refreshed_once_with_its_refresh_token() -> None:
    partner, clock, store = Partner(first="rt-7"), FakeClock(), MemoryGrantStore()
    store.latest = OAuthGrant(
        access_token=SecretStr("at-old"),
        refresh_token=SecretStr("rt-7"),
        expires_at=clock.time() - 1,
    )
    source = _source(partner, clock, store=store)

    assert await _token(source) == "at-1"
    assert partner.refreshed_with == ["rt-0", "rt-7"]
    assert store.latest.refresh_token.get_secret_value() == "rt-1"


async def test_nothing_new_in_the_store_keeps_the_refusal() -> None:
    partner, clock, store = Partner(first="rt-other"), FakeClock(), MemoryGrantStore()
    store.latest = OAuthGrant(
        access_token=SecretStr("at-x"), refresh_token=SecretStr("rt-0"), expires_at=clock.wall
    )
    with pytest.raises(AuthenticationError, match="refused") as caught:
        await _source(partner, clock, store=store).headers()
    assert caught.value.status_code == 400
    assert (store.loads, partner.refused, partner.granted) == (1, 1, 0)


async def test_a_failing_reload_keeps_the_refusal(caplog: pytest.LogCaptureFixture) -> None:
    class Down(MemoryGrantStore):
        async def reload(self) -> OAuthGrant | None:
            raise ConnectionError

    with caplog.at_level(logging.INFO, logger="test.oauth"), pytest.raises(AuthenticationError):
        await _source(Partner(first="rt-other"), FakeClock(), store=Down()).headers()
    assert "example.oauth.reload_failed" in caplog.messages


# -- expiry margin -----------------------------------------------------------------------------


async def test_a_stored_token_is_used_until_the_margin_before_its_expiry() -> None:
    partner, clock = Partner(), FakeClock()
    source = _source(partner, clock, access_token=SecretStr("stored"), expires_at=clock.wall + 600)

    assert await _token(source) == "stored"
    clock.advance(600 - 61)
    assert await _token(source) == "stored"
    clock.advance(2)  # 59 s left: inside the 60 s margin
    assert await _token(source) == "at-1"
    assert source.expires_at == clock.wall + 1800


async def test_the_margin_is_configurable() -> None:
    partner, clock = Partner(), FakeClock()
    source = _source(
        partner,
        clock,
        access_token=SecretStr("stored"),
        expires_at=clock.wall + 600,
        refresh_margin_seconds=300,
    )
    clock.advance(299)
    assert await _token(source) == "stored"
    clock.advance(2)
    assert await _token(source) == "at-1"


async def test_a_token_shorter_lived_than_twice_the_margin_is_renewed_at_half_life() -> None:
    partner, clock = Partner(expires_in=10), FakeClock()
    source = _source(partner, clock)
    assert await _token(source) == "at-1"
    clock.advance(4.9)
    assert await _token(source) == "at-1"
    clock.advance(0.2)
    assert await _token(source) == "at-2"


async def test_a_stored_token_without_expiry_is_used_until_rejected() -> None:
    partner, clock = Partner(), FakeClock()
    source = _source(partner, clock, access_token=SecretStr("stored"))
    clock.advance(10 * 86_400)
    assert await _token(source) == "stored"
    assert partner.requests == []


# -- persistence --------------------------------------------------------------------------------


async def test_every_refresh_is_saved_with_the_rotated_refresh_token() -> None:
    partner, clock, store = (
        Partner(api_domain="https://eu.example.com"),
        FakeClock(),
        MemoryGrantStore(),
    )
    source = _source(partner, clock, store=store)

    await source.headers()
    clock.advance(1800)
    await source.headers()

    assert [
        (g.access_token.get_secret_value(), g.refresh_token.get_secret_value(), g.expires_at)
        for g in store.saved
    ] == [("at-1", "rt-1", clock.wall), ("at-2", "rt-2", clock.wall + 1800)]
    assert partner.refreshed_with == ["rt-0", "rt-1"]
    assert [g.api_domain for g in store.saved] == ["https://eu.example.com"] * 2
    assert source.api_domain == "https://eu.example.com"


async def test_a_refresh_without_a_new_refresh_token_saves_the_current_one() -> None:
    partner, clock, store = Partner(rotate=False), FakeClock(), MemoryGrantStore()
    await _source(partner, clock, store=store).headers()
    (grant,) = store.saved
    assert grant.refresh_token.get_secret_value() == "rt-0"


async def test_an_api_domain_the_partner_may_not_use_is_dropped() -> None:
    partner, clock, store = Partner(api_domain="https://evil.test"), FakeClock(), MemoryGrantStore()
    source = _source(partner, clock, store=store)
    await source.headers()
    assert source.api_domain is None
    assert store.saved[0].api_domain is None


async def test_a_failing_save_is_logged_and_the_token_still_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="test.oauth"):
        source = _source(Partner(), clock, store=MemoryGrantStore(fail_save=True))
        assert await _token(source) == "at-1"
    assert [r.msg for r in caplog.records] == [
        "example.oauth.refreshed",
        "example.oauth.store_failed",
    ]
    logged = " ".join(str(vars(r)) for r in caplog.records)
    for secret in ("at-1", "rt-0", "rt-1", "csecret"):
        assert secret not in logged


# -- unusable answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json=["at-1"]),
        httpx.Response(200, json={"access_token": "at-1"}),
        httpx.Response(200, json={"access_token": "at-1", "expires_in": "1800"}),
        httpx.Response(200, json={"access_token": "", "expires_in": 1800}),
        httpx.Response(200, json={"access_token": "at-1", "expires_in": 0}),
    ],
)
async def test_outages_and_unreadable_answers_are_transient(answer: httpx.Response) -> None:
    async def respond(_: httpx.Request) -> httpx.Response:
        return answer

    store = MemoryGrantStore()
    with pytest.raises(TransientError):
        await _source(respond, FakeClock(), store=store).headers()
    assert store.saved == []
    assert store.loads == 0
