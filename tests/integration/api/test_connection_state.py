"""The connections API shows each connection's delivery state, from the real Redis.

The health and breaker entries are written by the delivery state module the engine uses
(:class:`~processors.deliveries.state.DeliveryStateRepository`); the API reads them.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from processors.deliveries.breaker import BreakerPolicy, Transition
from processors.deliveries.state import ConnectionHealth, DeliveryStateRepository
from processors.settings import Settings

from .conftest import OTHER_ADMIN, PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY, WHSEC

T = f"/v1/tenants/{TENANT}"
POLICY = BreakerPolicy(threshold=2, disable_after_seconds=3600)
HUBSPOT_BOTH: dict[str, Any] = {
    "delivery_mode": "both",
    "auth": {"type": "private_app", "token": "pat-na1-state-test-token-0e1f"},
    "webhook": {"url": "http://127.0.0.1:8901/copy", "secret": WHSEC},
}


@pytest.fixture
def state(redis_client: Redis, api_settings: Settings) -> DeliveryStateRepository:
    return DeliveryStateRepository(
        redis_client,
        key_prefix=api_settings.redis.key_prefix,
        dedupe_ttl_seconds=600,
        hop_ttl_seconds=600,
    )


async def _put(client: httpx.AsyncClient, connector: str, body: dict[str, Any]) -> str:
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).status_code == 204
    response = await client.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
    assert response.status_code in (200, 201), response.text
    assert response.json()["state"] == "enabled"
    connection_id: str = response.json()["connection_id"]
    return connection_id


async def _trip(state: DeliveryStateRepository, destination: str, now: float) -> None:
    for n in range(POLICY.threshold):
        _breaker, transition = await state.breaker_failed(
            destination,
            now=now + n,
            reason="503 from the endpoint",
            probe=False,
            updated_at=0.0,
            policy=POLICY,
        )
    assert transition is Transition.FAILING


async def _shown(client: httpx.AsyncClient, connector: str) -> dict[str, Any]:
    one = await client.get(f"{T}/connections/{connector}", headers=TENANT_ADMIN)
    assert one.status_code == 200
    listed = await client.get(f"{T}/connections", headers=TENANT_ADMIN)
    assert listed.status_code == 200
    (item,) = [i for i in listed.json()["items"] if i["connector"] == connector]
    fields = ("state", "state_reason", "state_since")
    assert {f: item[f] for f in fields} == {f: one.json()[f] for f in fields}
    return {f: item[f] for f in fields}


async def test_an_enabled_connection_shows_enabled(client: httpx.AsyncClient) -> None:
    await _put(client, "webhook", WEBHOOK_BODY)
    assert await _shown(client, "webhook") == {
        "state": "enabled",
        "state_reason": None,
        "state_since": None,
    }


async def test_failing_then_needs_reauth_then_disabled_then_a_save_enables(
    client: httpx.AsyncClient, state: DeliveryStateRepository
) -> None:
    connection_id = await _put(client, "webhook", WEBHOOK_BODY)
    now = time.time() + 5
    await _trip(state, connection_id, now)
    shown = await _shown(client, "webhook")
    assert shown["state"] == "failing"
    assert "503 from the endpoint" in shown["state_reason"]
    assert datetime.fromisoformat(shown["state_since"]).timestamp() == pytest.approx(now + 1)

    await state.set_connection_state(
        connection_id, ConnectionHealth.NEEDS_REAUTH, reason="401 Unauthorized", since=now + 2
    )
    shown = await _shown(client, "webhook")
    assert (shown["state"], shown["state_reason"]) == ("needs_reauth", "401 Unauthorized")

    _breaker, transition = await state.breaker_failed(
        connection_id,
        now=now + 3600,
        reason="timed out",
        probe=True,
        updated_at=0.0,
        policy=POLICY,
    )
    assert transition is Transition.DISABLED
    shown = await _shown(client, "webhook")
    assert shown["state"] == "disabled"
    assert "timed out" in shown["state_reason"]
    assert datetime.fromisoformat(shown["state_since"]).timestamp() == pytest.approx(now + 3600)

    # the admin saves the connection: health and breaker are forgotten, deliveries may resume
    await _trip(state, connection_id, now)
    saved = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    assert saved.status_code == 200
    assert saved.json()["state"] == "enabled"
    assert await state.connection_state(connection_id) is None
    assert not (await state.breaker(connection_id)).counting
    assert (await _shown(client, "webhook"))["state"] == "enabled"


async def test_a_webhook_copy_that_is_gone_shows_parked_and_names_the_copy(
    client: httpx.AsyncClient, state: DeliveryStateRepository
) -> None:
    connection_id = await _put(client, "hubspot", HUBSPOT_BOTH)
    now = time.time() + 5
    await _trip(state, connection_id, now)
    await state.set_connection_state(
        f"{connection_id}:webhook", ConnectionHealth.GONE, reason="410 Gone", since=now
    )
    shown = await _shown(client, "hubspot")
    assert shown["state"] == "parked", "the more severe of the two destinations"
    assert shown["state_reason"] == "webhook copy: 410 Gone"


async def test_health_older_than_the_last_save_is_not_shown(
    client: httpx.AsyncClient, state: DeliveryStateRepository
) -> None:
    connection_id = await _put(client, "webhook", WEBHOOK_BODY)
    await state.set_connection_state(
        connection_id, ConnectionHealth.GONE, reason="410 Gone", since=1.0
    )
    assert (await _shown(client, "webhook"))["state"] == "enabled"


async def test_a_connection_the_tenant_disabled_shows_disabled(client: httpx.AsyncClient) -> None:
    await _put(client, "webhook", WEBHOOK_BODY)
    off = await client.put(
        f"{T}/connections/webhook", json={**WEBHOOK_BODY, "enabled": False}, headers=TENANT_ADMIN
    )
    assert off.status_code == 200
    shown = await _shown(client, "webhook")
    assert (shown["state"], shown["state_reason"]) == ("disabled", "disabled by the tenant")


async def test_another_tenants_admin_sees_no_state(
    client: httpx.AsyncClient, state: DeliveryStateRepository
) -> None:
    connection_id = await _put(client, "webhook", WEBHOOK_BODY)
    await _trip(state, connection_id, time.time() + 5)
    for path in (f"{T}/connections", f"{T}/connections/webhook"):
        response = await client.get(path, headers=OTHER_ADMIN)
        assert response.status_code == 403
        assert "state_reason" not in response.text
