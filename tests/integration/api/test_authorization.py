"""The authorization matrix: every endpoint against every kind of caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from processors.settings import Settings

from .conftest import (
    HUBSPOT_BODY,
    JWT_SECRET,
    OTHER_ADMIN,
    OTHER_TENANT,
    PIPEDRIVE_BODY,
    PLATFORM,
    TENANT,
    WEBHOOK_BODY,
    auth,
    make_token,
)

CALLERS: dict[str, dict[str, str]] = {
    "no_token": {},
    "malformed": {"Authorization": "Bearer not-a-jwt"},
    "expired": auth(make_token(exp_in=-3600)),
    "wrong_signature": auth(make_token(secret=JWT_SECRET[::-1])),
    "tenant_admin": auth(make_token(exp_in=86_400)),
    "other_tenant_admin": OTHER_ADMIN,
    "platform_admin": PLATFORM,
    "no_known_role": auth(make_token(roles=["viewer", "billing_admin"], exp_in=86_400)),
}

T = f"/v1/tenants/{TENANT}"
# (method, path, json body, 2xx status for an allowed caller, tenant endpoint?)
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None, int, bool]] = {
    "allowlist_put": ("PUT", f"/admin/v1/allowlist/{TENANT}", None, 204, False),
    "allowlist_delete": ("DELETE", f"/admin/v1/allowlist/{TENANT}", None, 204, False),
    "allowlist_get": ("GET", f"/admin/v1/allowlist/{TENANT}", None, 200, False),
    "connections_list": ("GET", f"{T}/connections", None, 200, True),
    "webhook_put": ("PUT", f"{T}/connections/webhook", WEBHOOK_BODY, 200, True),
    "hubspot_put": ("PUT", f"{T}/connections/hubspot", HUBSPOT_BODY, 201, True),
    "pipedrive_put": ("PUT", f"{T}/connections/pipedrive", PIPEDRIVE_BODY, 201, True),
    "connection_get": ("GET", f"{T}/connections/webhook", None, 200, True),
    "connection_delete": ("DELETE", f"{T}/connections/webhook", None, 204, True),
    "deliveries": ("GET", f"{T}/deliveries", None, 200, True),
}


def expected_status(caller: str, allowed_status: int, tenant_endpoint: bool) -> int:
    if caller in {"no_token", "malformed", "expired", "wrong_signature"}:
        return 401
    if caller == "platform_admin":
        return allowed_status
    if caller == "tenant_admin" and tenant_endpoint:
        return allowed_status
    return 403


async def seed(client: httpx.AsyncClient) -> None:
    """The tenant is allowlisted and has a webhook connection."""
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).status_code == 204
    response = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=PLATFORM)
    assert response.status_code == 201


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_matrix(client: httpx.AsyncClient, endpoint: str, caller: str) -> None:
    await seed(client)
    method, path, body, allowed_status, tenant_endpoint = ENDPOINTS[endpoint]
    response = await client.request(method, path, json=body, headers=CALLERS[caller])
    assert response.status_code == expected_status(caller, allowed_status, tenant_endpoint)
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] in {"missing_token", "invalid_token"}
    elif response.status_code == 403:
        assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_unauthorised_calls_change_nothing(client: httpx.AsyncClient, endpoint: str) -> None:
    await seed(client)
    method, path, body, _status, _tenant = ENDPOINTS[endpoint]
    before = (await client.get(f"{T}/connections", headers=PLATFORM)).json()
    for caller in ("no_token", "expired", "other_tenant_admin", "no_known_role"):
        await client.request(method, path, json=body, headers=CALLERS[caller])
    assert (await client.get(f"{T}/connections", headers=PLATFORM)).json() == before
    allowlisted = await client.get(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    assert allowlisted.json() == {"tenant_id": TENANT, "allowlisted": True}


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "/connections", None),
        ("GET", "/connections/webhook", None),
        ("GET", "/connections/hubspot", None),
        ("DELETE", "/connections/webhook", None),
        ("PUT", "/connections/webhook", WEBHOOK_BODY),
        ("PUT", "/connections/hubspot", {"unknown": "field"}),
        ("PUT", "/connections/salesforce", {}),
        ("GET", "/connections/salesforce", None),
        ("GET", "/deliveries?cursor=bogus&status=nope", None),
    ],
)
async def test_cross_tenant_reveals_nothing(
    client: httpx.AsyncClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """Another tenant's admin gets the same 403 whether the target exists or not."""
    await seed(client)
    answers = set()
    for tenant in (TENANT, "t_ghost"):
        response = await client.request(
            method, f"/v1/tenants/{tenant}{suffix}", json=body, headers=OTHER_ADMIN
        )
        answers.add((response.status_code, response.text, response.headers.get("content-length")))
    expected = '{"error":{"code":"forbidden","message":"not allowed for this tenant"}}'
    assert answers == {(403, expected, str(len(expected)))}


async def test_other_tenant_admin_works_on_its_own_tenant(
    client_for: Callable[[Settings], Any], api_settings: Settings
) -> None:
    async with client_for(api_settings) as client:
        await seed(client)
        await client.put(f"/admin/v1/allowlist/{OTHER_TENANT}", headers=PLATFORM)
        own = f"/v1/tenants/{OTHER_TENANT}/connections"
        assert (await client.get(own, headers=OTHER_ADMIN)).json() == {"items": []}
        created = await client.put(f"{own}/webhook", json=WEBHOOK_BODY, headers=OTHER_ADMIN)
        assert created.status_code == 201
        assert (
            await client.get(f"{T}/connections/webhook", headers=OTHER_ADMIN)
        ).status_code == 403
