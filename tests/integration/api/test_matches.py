"""Match review: listing links and reviews, confirm, relink, unlink, across tenants."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from connectors.base import EntityKind, IdentityCandidate
from connectors.base.contract import CompanyRecord
from processors.identity.repository import IdentityRepository
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.settings import Settings
from tests.integration.api.conftest import (
    OTHER_ADMIN,
    PLATFORM,
    TENANT,
    TENANT_ADMIN,
    WEBHOOK_BODY,
)

BASE = f"/v1/tenants/{TENANT}/connections/webhook/matches"


async def _prepare(client: httpx.AsyncClient, redis_client: Redis, settings: Settings) -> None:
    await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    created = await client.put(
        f"/v1/tenants/{TENANT}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN
    )
    assert created.status_code == 201
    connection_id = created.json()["connection_id"]
    resolver = ConnectionIdentityResolver(
        IdentityRepository(redis_client, key_prefix=settings.redis.key_prefix),
        tenant_id=TENANT,
        connection_id=connection_id,
        policy=MatchPolicy(),
    )
    company = CompanyRecord(
        company_id="co_1", name="Acme AB", domain="acme.se", domains=["acme.se"]
    )
    await resolver.decide(
        EntityKind.COMPANY,
        "co_1",
        company,
        [IdentityCandidate("p_1", name="Acme", domains=("acme.se",))],
    )
    await resolver.decide(
        EntityKind.COMPANY,
        "co_2",
        CompanyRecord(company_id="co_2", name="Globex", domain="globex.se"),
        [
            IdentityCandidate("p_2", domains=("globex.se",)),
            IdentityCandidate("p_3", domains=("globex.se",)),
        ],
    )


async def test_review_lists_auto_links_and_ambiguous_matches(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _prepare(client, redis_client, api_settings)
    response = await client.get(BASE, headers=TENANT_ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert [(link["queast_id"], link["state"]) for link in body["links"]] == [
        ("co_1", "auto_linked")
    ]
    assert body["links"][0]["strategy"] == "domain"
    assert [r["queast_id"] for r in body["reviews"]] == ["co_2"]


async def test_confirm_relink_and_unlink(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _prepare(client, redis_client, api_settings)
    confirmed = await client.post(f"{BASE}/company/co_1/confirm", headers=TENANT_ADMIN)
    assert confirmed.status_code == 200
    assert confirmed.json()["state"] == "confirmed"
    assert confirmed.json()["decided_by"]
    from_review = await client.post(f"{BASE}/company/co_2/confirm", headers=TENANT_ADMIN)
    assert from_review.status_code == 200
    assert from_review.json()["partner_object_id"] in {"p_2", "p_3"}
    relinked = await client.put(
        f"{BASE}/company/co_2", json={"partner_object_id": "p_3"}, headers=TENANT_ADMIN
    )
    assert relinked.json()["partner_object_id"] == "p_3"
    assert relinked.json()["strategy"] == "manual"
    listing = (await client.get(BASE, headers=TENANT_ADMIN)).json()
    assert listing["reviews"] == []
    assert (await client.delete(f"{BASE}/company/co_1", headers=TENANT_ADMIN)).status_code == 204
    assert (await client.delete(f"{BASE}/company/co_1", headers=TENANT_ADMIN)).status_code == 404
    assert (
        await client.post(f"{BASE}/company/co_9/confirm", headers=TENANT_ADMIN)
    ).status_code == 404


async def test_another_tenant_and_bad_input_are_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _prepare(client, redis_client, api_settings)
    for method, path, body in [
        ("GET", BASE, None),
        ("POST", f"{BASE}/company/co_1/confirm", None),
        ("PUT", f"{BASE}/company/co_1", {"partner_object_id": "x"}),
        ("DELETE", f"{BASE}/company/co_1", None),
    ]:
        other = await client.request(method, path, json=body, headers=OTHER_ADMIN)
        assert other.status_code == 403
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401
    assert (await client.get(f"{BASE}/../hubspot/matches", headers=TENANT_ADMIN)).status_code in {
        404,
        422,
    }
    bad = await client.put(
        f"{BASE}/company/co_1", json={"partner_object_id": ""}, headers=TENANT_ADMIN
    )
    assert bad.status_code == 422
    extra = await client.put(
        f"{BASE}/company/co_1", json={"partner_object_id": "x", "y": 1}, headers=TENANT_ADMIN
    )
    assert extra.status_code == 422
    kind = await client.post(f"{BASE}/planet/co_1/confirm", headers=TENANT_ADMIN)
    assert kind.status_code == 422
    missing = await client.get(
        f"/v1/tenants/{TENANT}/connections/hubspot/matches", headers=TENANT_ADMIN
    )
    assert missing.status_code == 404
