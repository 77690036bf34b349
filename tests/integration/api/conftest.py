"""Fixtures of the API integration tests: the app over the real Redis, tokens, leak checks.

Every response body of every test and every log record are checked at teardown: no plaintext
secret used by these tests, and no sealed token, may appear in either.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from processors.api import create_api
from processors.secrets import SecretBox
from processors.settings import AuthSettings, Settings, WebhookSettings

JWT_SECRET = "integration-api-hs256-secret-0123456789abcdef-0123456789abcdef-0123"
TENANT = "t_a"
OTHER_TENANT = "t_b"

WHSEC = "whsec_" + base64.b64encode(b"integration-webhook-secret-1-32b").decode()
WHSEC_2 = "whsec_" + base64.b64encode(b"integration-webhook-secret-2-32b").decode()
HUBSPOT_TOKEN = "pat-na1-hubspot-private-app-token-3f9a1c"
HUBSPOT_CLIENT_SECRET = "hubspot-oauth-client-secret-77c2e0"
HUBSPOT_REFRESH_TOKEN = "hubspot-oauth-refresh-token-a61b9d"
PIPEDRIVE_TOKEN = "pipedrive-api-token-5d0e44aa"
PIPEDRIVE_CLIENT_SECRET = "pipedrive-oauth-client-secret-19bb03"
PIPEDRIVE_REFRESH_TOKEN = "pipedrive-oauth-refresh-token-c4e871"

SECRETS = (
    WHSEC,
    WHSEC_2,
    WHSEC.removeprefix("whsec_"),
    WHSEC_2.removeprefix("whsec_"),
    HUBSPOT_TOKEN,
    HUBSPOT_CLIENT_SECRET,
    HUBSPOT_REFRESH_TOKEN,
    PIPEDRIVE_TOKEN,
    PIPEDRIVE_CLIENT_SECRET,
    PIPEDRIVE_REFRESH_TOKEN,
)
"""Every plaintext secret these tests send; none may come back or be logged."""

SEALED_MARK = "qi-enc:"

WEBHOOK_BODY: dict[str, Any] = {
    "enabled": True,
    "delivery_mode": "webhook",
    "webhook": {"url": "http://127.0.0.1:8900/hook", "secret": WHSEC},
    "event_types": {"company.upserted": True, "job_ad.published": False},
    "export_non_strict_signals": True,
    "rate_limit_per_second": 20,
    "max_concurrency": 4,
}
HUBSPOT_BODY: dict[str, Any] = {
    "enabled": True,
    "delivery_mode": "api",
    "auth": {"type": "private_app", "token": HUBSPOT_TOKEN},
    "event_types": {"signal.emitted": True},
}
PIPEDRIVE_BODY: dict[str, Any] = {
    "enabled": True,
    "delivery_mode": "api",
    "auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN},
    "domain_field_key": "org_domain_key_1",
}
BODIES = {"webhook": WEBHOOK_BODY, "hubspot": HUBSPOT_BODY, "pipedrive": PIPEDRIVE_BODY}

TokenFactory = Callable[..., str]


def make_token(
    *,
    roles: list[str] | None = None,
    tenant_id: str | None = TENANT,
    sub: str = "user-1",
    exp_in: int = 86_400,
    secret: str = JWT_SECRET,
) -> str:
    """A bearer token; valid for a day by default, as tokens minted when a module is collected
    (``parametrize`` arguments) must outlive the whole suite, however slow its machine."""
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": ["tenant_admin"] if roles is None else roles,
        "exp": int(time.time()) + exp_in,
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    return jwt.encode(claims, secret, algorithm="HS256")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_DAY = 86_400
PLATFORM = auth(make_token(roles=["platform_admin"], tenant_id=None, sub="ops-1", exp_in=_DAY))
TENANT_ADMIN = auth(make_token(exp_in=_DAY))
OTHER_ADMIN = auth(make_token(tenant_id=OTHER_TENANT, sub="user-2", exp_in=_DAY))


def connections_key(settings: Settings, tenant_id: str) -> str:
    return f"{settings.redis.key_prefix}tenant:{tenant_id}:connections"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """The test settings, with a JWT secret and private webhook destinations allowed."""
    return settings.model_copy(
        update={
            "auth": AuthSettings(jwt_secret=SecretStr(JWT_SECRET)),
            "webhook": WebhookSettings(allow_private_networks=True),
        }
    )


@pytest.fixture
def box(api_settings: Settings) -> SecretBox:
    return api_settings.secrets.secret_box()


@pytest.fixture
async def redis_client(api_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(api_settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{api_settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def response_bodies() -> list[str]:
    return []


@pytest.fixture
def client_for(response_bodies: list[str], redis_client: Redis) -> Callable[[Settings], Any]:
    """``async with client_for(settings) as client``: a client of a fresh app over ``settings``.

    Depends on ``redis_client`` so the test's keys are removed at the end.
    """
    _ = redis_client

    @asynccontextmanager
    async def open_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async def keep_body(response: httpx.Response) -> None:
            await response.aread()
            response_bodies.append(response.text)

        app = create_api(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://api.test",
                event_hooks={"response": [keep_body]},
            ) as http:
                yield http

    return open_client


@pytest.fixture
async def client(
    client_for: Callable[[Settings], Any], api_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(api_settings) as http:
        yield http


@pytest.fixture(autouse=True)
def no_secret_leaks(caplog: pytest.LogCaptureFixture, response_bodies: list[str]) -> Iterator[None]:
    """At teardown: no secret or sealed token in any response body or log record."""
    caplog.set_level(logging.DEBUG)
    yield
    for body in response_bodies:
        assert SEALED_MARK not in body
        for secret in SECRETS:
            assert secret not in body
    for phase in ("setup", "call"):
        for record in caplog.get_records(phase):
            rendered = record.getMessage() + json.dumps(vars(record), default=str)
            assert SEALED_MARK not in rendered
            for secret in SECRETS:
                assert secret not in rendered
