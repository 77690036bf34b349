"""``POST /v1/tenants/{tenant_id}/connections/{connector}/preview`` through the real app.

The connections are created through the API and point at a loopback :class:`CountingServer`
(the webhook URL, HubSpot's base URL): every test asserts it received nothing.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from processors.api import MAX_BODY_BYTES
from processors.samples import sample_events
from processors.secrets import REDACTED
from processors.settings import PartnerSettings, Settings
from tests.support.counting_http import CountingServer

from .conftest import HUBSPOT_BODY, OTHER_ADMIN, PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY

T = f"/v1/tenants/{TENANT}"


def company_event(tenant: str = TENANT) -> dict[str, Any]:
    return next(e for e in sample_events([tenant], 10) if e["event_type"] == "company.upserted")


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer() as counting:
        yield counting


@pytest.fixture
async def preview_client(
    client_for: Callable[[Settings], Any], api_settings: Settings, server: CountingServer
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with HubSpot pointed at the counting server, the tenant allowed, and a webhook
    and a HubSpot connection created through the API."""
    settings = api_settings.model_copy(
        update={"partners": PartnerSettings(base_urls={"hubspot": server.url})}
    )
    async with client_for(settings) as http:
        allowed = await http.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
        assert allowed.status_code == 204
        webhook = copy.deepcopy(WEBHOOK_BODY)
        webhook["webhook"]["url"] = f"{server.url}/hook"
        created = await http.put(f"{T}/connections/webhook", json=webhook, headers=TENANT_ADMIN)
        assert created.status_code == 201
        created = await http.put(f"{T}/connections/hubspot", json=HUBSPOT_BODY, headers=PLATFORM)
        assert created.status_code == 201
        yield http


async def test_a_tenant_admin_previews_the_webhook_request(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    event = company_event()

    response = await preview_client.post(
        f"{T}/connections/webhook/preview", json={"event": event}, headers=TENANT_ADMIN
    )

    assert response.status_code == 200
    preview = response.json()
    assert preview["outcome"] == "would_send"
    (destination,) = preview["destinations"]
    assert destination["record"]["company_id"] == "co_0"
    (request,) = destination["requests"]
    assert (request["method"], request["url"]) == ("POST", f"{server.url}/hook")
    assert request["headers"]["webhook-signature"] == REDACTED
    assert request["headers"]["webhook-id"] == destination["idempotency_key"]
    assert request["body"]["data"] == destination["record"]
    assert server.received == []


async def test_a_platform_admin_previews_any_tenant_and_hubspot_would_search(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    response = await preview_client.post(
        f"{T}/connections/hubspot/preview", json={"event": company_event()}, headers=PLATFORM
    )

    assert response.status_code == 200
    (destination,) = response.json()["destinations"]
    purposes = [r["purpose"] for r in destination["requests"]]
    assert purposes[0] == "lookup"
    assert purposes[-1] == "write"
    assert destination["requests"][0]["note"].startswith("would search")
    assert all(r["headers"]["authorization"] == REDACTED for r in destination["requests"])
    assert server.received == []


async def test_without_a_token_401(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    response = await preview_client.post(
        f"{T}/connections/webhook/preview", json={"event": company_event()}
    )

    assert response.status_code == 401
    assert server.received == []


async def test_another_tenants_admin_403_even_with_a_forged_event(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    for event in (company_event(), company_event("t_b")):
        response = await preview_client.post(
            f"{T}/connections/webhook/preview", json={"event": event}, headers=OTHER_ADMIN
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert server.received == []


async def test_an_event_of_another_tenant_is_refused_as_a_key_mismatch(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    response = await preview_client.post(
        f"{T}/connections/webhook/preview",
        json={"event": company_event("t_b")},
        headers=TENANT_ADMIN,
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_event"
    assert error["details"][0]["msg"].startswith("key_mismatch")
    assert server.received == []


async def test_unknown_connection_404(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    response = await preview_client.post(
        f"{T}/connections/pipedrive/preview", json={"event": company_event()}, headers=PLATFORM
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "connection_not_found"
    assert server.received == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"event": {**company_event(), "data": {"company_id": ""}}}, "invalid_event"),
        ({"event": {**company_event(), "event_type": "company.renamed"}}, "invalid_event"),
        ({"event": {**company_event(), "schema_version": "2.0"}}, "invalid_event"),
        ({"event": "not an object"}, "validation_failed"),
        ({"events": [company_event()]}, "validation_failed"),
        ({}, "validation_failed"),
    ],
)
async def test_a_malformed_event_422_with_the_reason(
    preview_client: httpx.AsyncClient, server: CountingServer, body: dict[str, Any], code: str
) -> None:
    response = await preview_client.post(
        f"{T}/connections/webhook/preview", json=body, headers=TENANT_ADMIN
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert server.received == []


async def test_an_unregistered_connector_422(preview_client: httpx.AsyncClient) -> None:
    response = await preview_client.post(
        f"{T}/connections/salesforce/preview", json={"event": company_event()}, headers=PLATFORM
    )

    assert response.status_code == 422


async def test_an_oversized_body_413(
    preview_client: httpx.AsyncClient, server: CountingServer
) -> None:
    event = company_event()
    event["data"]["name"] = "x" * MAX_BODY_BYTES

    response = await preview_client.post(
        f"{T}/connections/webhook/preview", json={"event": event}, headers=TENANT_ADMIN
    )

    assert response.status_code == 413
    assert server.received == []


async def test_a_preview_changes_nothing_in_redis(
    preview_client: httpx.AsyncClient,
    redis_client: Redis,
    api_settings: Settings,
    server: CountingServer,
) -> None:
    async def state() -> dict[bytes, Any]:
        found: dict[bytes, Any] = {}
        async for key in redis_client.scan_iter(match=f"{api_settings.redis.key_prefix}*"):
            kind = await redis_client.type(key)
            found[key] = (
                await redis_client.hgetall(key)
                if kind == b"hash"
                else await redis_client.smembers(key)
                if kind == b"set"
                else await redis_client.get(key)
            )
        return found

    before = await state()
    for connector in ("webhook", "hubspot"):
        response = await preview_client.post(
            f"{T}/connections/{connector}/preview",
            json={"event": company_event()},
            headers=PLATFORM,
        )
        assert response.status_code == 200

    assert await state() == before
    assert server.received == []
