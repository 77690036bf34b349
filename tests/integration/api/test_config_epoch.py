"""Configuration written through the API writes the configuration epoch (routing may go on)."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from processors.settings import Settings
from tests.integration.api.conftest import PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY


def _epoch_key(settings: Settings) -> str:
    return f"{settings.redis.key_prefix}config:epoch"


async def test_allowlist_and_connection_writes_stamp_the_epoch(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    assert await redis_client.get(_epoch_key(api_settings)) is None
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).is_success
    epoch = await redis_client.get(_epoch_key(api_settings))
    assert epoch is not None

    await redis_client.delete(_epoch_key(api_settings))  # as after a loss
    created = await client.put(
        f"/v1/tenants/{TENANT}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN
    )
    assert created.status_code == 201
    assert await redis_client.get(_epoch_key(api_settings)) is not None

    await redis_client.delete(_epoch_key(api_settings))
    deleted = await client.delete(f"/v1/tenants/{TENANT}/connections/webhook", headers=TENANT_ADMIN)
    assert deleted.status_code == 204
    assert await redis_client.get(_epoch_key(api_settings)) is not None
