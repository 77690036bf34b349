"""Deleting a connection over the real Redis leaves no key of its connection id behind."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.oauth import OAuthGrant
from processors.deliveries.envelope import DeliveryItem
from processors.deliveries.state import ConnectionHealth, DeliveryStateRepository
from processors.identity.repository import IdentityLink, IdentityRepository, LinkState, ReviewEntry
from processors.oauthgrants import OAuthTokenStore
from processors.secrets import SecretBox
from processors.settings import Settings

from .conftest import HUBSPOT_CLIENT_SECRET, HUBSPOT_REFRESH_TOKEN, OTHER_TENANT, PLATFORM, TENANT

HUBSPOT_OAUTH: dict[str, Any] = {
    "delivery_mode": "both",
    "auth": {
        "type": "oauth",
        "client_id": "hubspot-client-id-1",
        "client_secret": HUBSPOT_CLIENT_SECRET,
        "refresh_token": HUBSPOT_REFRESH_TOKEN,
    },
    "webhook": {
        "url": "http://127.0.0.1:8901/h",
        "secret": "whsec_aW50ZWdyYXRpb24td2ViaG9vay1zZWNyZXQtMS0zMmI=",
    },
}


def item(connection_id: str, *, connector: str, company: str, version: int) -> DeliveryItem:
    return DeliveryItem(
        value=b"",
        headers={
            "qi.delivery_id": f"d-{connection_id}-{connector}-{company}",
            "qi.tenant_id": TENANT,
            "qi.connection_id": connection_id,
            "qi.connector": connector,
            "qi.owner_connector": "hubspot",
            "qi.idempotency_key": f"k-{connector}-{company}-{version}",
            "qi.entity_version": str(version),
            "qi.contract": "company",
            "qi.entity_id": company,
        },
        source_topic="t",
        source_partition=0,
        source_offset=0,
    )


async def use(
    redis: Redis, settings: Settings, box: SecretBox, tenant_id: str, connection_id: str
) -> None:
    """What delivering for a connection leaves in Redis, written by the modules that own it."""
    prefix = settings.redis.key_prefix
    await OAuthTokenStore(redis, box=box, key_prefix=prefix).save(
        OAuthGrant(
            access_token=SecretStr("renewed-access-token-5be1"),
            refresh_token=SecretStr("renewed-refresh-token-0c7a"),
            expires_at=2_000_000_000.0,
        ),
        tenant_id=tenant_id,
        connection_id=connection_id,
        credentials="fp",
    )
    identity = IdentityRepository(redis, key_prefix=prefix)
    for kind, queast_id, partner_id in (("company", "co_1", "901"), ("person", "pe_1", "902")):
        await identity.put(
            IdentityLink(
                tenant_id=tenant_id,
                connection_id=connection_id,
                kind=kind,
                queast_id=queast_id,
                partner_object_id=partner_id,
                state=LinkState.CREATED,
                strategy="created",
                confidence=1.0,
            )
        )
    await identity.add_review(
        ReviewEntry(
            tenant_id=tenant_id,
            connection_id=connection_id,
            kind="company",
            queast_id="co_2",
            best_candidate_id="903",
            confidence=0.7,
            strategy="name",
            explanation="two candidates",
        )
    )
    await identity.add_waiting(connection_id, "co_3", "pe_2")
    state = DeliveryStateRepository(
        redis, key_prefix=prefix, dedupe_ttl_seconds=600, hop_ttl_seconds=600
    )
    await state.mark_delivered(
        [
            item(connection_id, connector="hubspot", company="co_1", version=3),
            item(connection_id, connector="webhook", company="co_1", version=3),
        ]
    )
    for destination in (connection_id, f"{connection_id}:webhook"):
        await state.set_connection_state(
            destination, ConnectionHealth.NEEDS_REAUTH, reason="401", since=1.0
        )


async def keys_of(redis: Redis, settings: Settings, connection_id: str) -> list[str]:
    pattern = f"{settings.redis.key_prefix}*{connection_id}*"
    return sorted([key.decode() async for key in redis.scan_iter(match=pattern, count=1000)])


async def test_delete_forgets_every_key_of_the_connection(
    client: httpx.AsyncClient, api_settings: Settings, redis_client: Redis, box: SecretBox
) -> None:
    ids = {}
    for tenant in (TENANT, OTHER_TENANT):
        response = await client.put(
            f"/v1/tenants/{tenant}/connections/hubspot", json=HUBSPOT_OAUTH, headers=PLATFORM
        )
        assert response.status_code == 201
        ids[tenant] = response.json()["connection_id"]
        await use(redis_client, api_settings, box, tenant, ids[tenant])
    prefix = api_settings.redis.key_prefix
    deleted_id, kept_id = ids[TENANT], ids[OTHER_TENANT]
    before = await keys_of(redis_client, api_settings, deleted_id)
    assert {key.removeprefix(prefix).replace(deleted_id, "C") for key in before} == {
        "oauth:C",
        "idmap:C:company",
        "idmap:C:company:partner",
        "idmap:C:person",
        "idmap:C:person:partner",
        "idreview:C",
        "idwait:C:co_3",
        "ver:C",
        "connstate:C",
        "connstate:C:webhook",
    }
    kept_before = await keys_of(redis_client, api_settings, kept_id)

    response = await client.delete(f"/v1/tenants/{TENANT}/connections/hubspot", headers=PLATFORM)
    assert response.status_code == 204

    assert await keys_of(redis_client, api_settings, deleted_id) == []
    assert await keys_of(redis_client, api_settings, kept_id) == kept_before
    # the dedupe keys are named by idempotency key, not connection: they stay and expire
    assert await redis_client.exists(f"{prefix}dlv:k-hubspot-co_1-3") == 1
    again = await client.delete(f"/v1/tenants/{TENANT}/connections/hubspot", headers=PLATFORM)
    assert again.status_code == 404
