"""``GET …/matches`` pages through links and reviews with a cursor instead of one HGETALL."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from processors.identity.repository import IdentityLink, IdentityRepository, LinkState, ReviewEntry
from processors.settings import Settings
from tests.integration.api.conftest import PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY

BASE = f"/v1/tenants/{TENANT}/connections/webhook/matches"
COMPANIES, PEOPLE, REVIEWS = 260, 130, 45


async def _fill(client: httpx.AsyncClient, redis_client: Redis, settings: Settings) -> None:
    await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    created = await client.put(
        f"/v1/tenants/{TENANT}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN
    )
    assert created.status_code == 201
    connection_id = created.json()["connection_id"]
    store = IdentityRepository(redis_client, key_prefix=settings.redis.key_prefix)
    for kind, count in (("company", COMPANIES), ("person", PEOPLE)):
        for n in range(count):
            await store.put(
                IdentityLink(
                    tenant_id=TENANT,
                    connection_id=connection_id,
                    kind=kind,
                    queast_id=f"{kind}_{n}",
                    partner_object_id=f"p_{kind}_{n}",
                    state=LinkState.AUTO_LINKED,
                    strategy="domain",
                    confidence=1.0,
                )
            )
    for n in range(REVIEWS):
        await store.add_review(
            ReviewEntry(
                tenant_id=TENANT,
                connection_id=connection_id,
                kind="company",
                queast_id=f"review_{n}",
                best_candidate_id="p_x",
                confidence=0.5,
                strategy="name",
                explanation="two candidates",
            )
        )


async def _all_pages(client: httpx.AsyncClient, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(BASE, params=params, headers=TENANT_ADMIN)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
    pytest.fail("the cursor never ended")


async def test_matches_come_in_bounded_pages_that_together_list_everything(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _fill(client, redis_client, api_settings)
    limit = 50
    pages = await _all_pages(client, limit)
    links = [link["queast_id"] for page in pages for link in page["links"]]
    reviews = [entry["queast_id"] for page in pages for entry in page["reviews"]]
    expected_links = {f"company_{n}" for n in range(COMPANIES)} | {
        f"person_{n}" for n in range(PEOPLE)
    }
    assert set(links) == expected_links
    assert set(reviews) == {f"review_{n}" for n in range(REVIEWS)}
    total = COMPANIES + PEOPLE + REVIEWS
    assert len(pages) >= total // (2 * limit), "not one unbounded page"
    assert max(len(p["links"]) + len(p["reviews"]) for p in pages) < 2 * limit


async def test_the_default_page_is_bounded_and_a_small_list_is_one_page(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _fill(client, redis_client, api_settings)
    first = (await client.get(BASE, headers=TENANT_ADMIN)).json()
    assert first["next_cursor"] is not None
    assert len(first["links"]) + len(first["reviews"]) < COMPANIES + PEOPLE + REVIEWS
    pages = await _all_pages(client, 500)
    assert sum(len(p["links"]) + len(p["reviews"]) for p in pages) >= COMPANIES + PEOPLE + REVIEWS


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        base64.urlsafe_b64encode(b"m1:7:0").decode(),
        base64.urlsafe_b64encode(b"m1:0:-1").decode(),
        base64.urlsafe_b64encode(b"x9:0:0").decode(),
    ],
)
async def test_a_cursor_the_api_did_not_issue_is_400(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, cursor: str
) -> None:
    await _fill(client, redis_client, api_settings)
    response = await client.get(BASE, params={"cursor": cursor}, headers=TENANT_ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


async def test_limit_is_bounded(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await _fill(client, redis_client, api_settings)
    response = await client.get(BASE, params={"limit": 501}, headers=TENANT_ADMIN)
    assert response.status_code == 422
