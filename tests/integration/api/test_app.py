"""The app factory: operations endpoints, OpenAPI with the bearer scheme, the error shape."""

from __future__ import annotations

import httpx


async def test_healthz_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")


async def test_openapi_declares_the_bearer_scheme_and_paths(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    paths = spec["paths"]
    for path, methods in {
        "/admin/v1/allowlist/{tenant_id}": {"put", "delete", "get"},
        "/v1/tenants/{tenant_id}/connections": {"get"},
        "/v1/tenants/{tenant_id}/connections/webhook": {"put"},
        "/v1/tenants/{tenant_id}/connections/hubspot": {"put"},
        "/v1/tenants/{tenant_id}/connections/pipedrive": {"put"},
        "/v1/tenants/{tenant_id}/connections/{connector}": {"get", "delete"},
        "/v1/tenants/{tenant_id}/deliveries": {"get"},
    }.items():
        assert set(paths[path]) == methods
        for method in methods:
            assert paths[path][method]["security"] == [{"bearerAuth": []}]
    secret_schema = spec["components"]["schemas"]["WebhookEndpointIn"]["properties"]["secret"]
    assert "writeOnly" in str(secret_schema)


async def test_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_operations_endpoints_need_no_token_and_no_body_limit(
    client: httpx.AsyncClient,
) -> None:
    assert (
        await client.get("/healthz", headers={"Authorization": "Bearer junk"})
    ).status_code == 200
