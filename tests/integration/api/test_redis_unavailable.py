"""The API with its Redis unreachable: every endpoint that needs Redis answers 503 in the
API's JSON error shape (``store_unavailable``), never a plain-text 500; auth still comes first."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from processors.settings import RedisSettings, Settings
from tests.integration.api.conftest import PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def unreachable(api_settings: Settings) -> Settings:
    redis = RedisSettings(
        url=f"redis://127.0.0.1:{_closed_port()}/0",
        key_prefix=api_settings.redis.key_prefix,
        connect_timeout_seconds=0.5,
        retries=1,
        retry_backoff_cap_seconds=0.05,
    )
    return api_settings.model_copy(update={"redis": redis})


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", f"/v1/tenants/{TENANT}/connections", TENANT_ADMIN, None),
        ("GET", f"/v1/tenants/{TENANT}/connections/webhook", TENANT_ADMIN, None),
        ("PUT", f"/v1/tenants/{TENANT}/connections/webhook", PLATFORM, WEBHOOK_BODY),
        ("DELETE", f"/v1/tenants/{TENANT}/connections/webhook", TENANT_ADMIN, None),
        ("PUT", f"/admin/v1/allowlist/{TENANT}", PLATFORM, None),
        ("GET", f"/admin/v1/allowlist/{TENANT}", PLATFORM, None),
        ("GET", f"/v1/tenants/{TENANT}/deliveries", TENANT_ADMIN, None),
        ("GET", f"/v1/tenants/{TENANT}/connections/webhook/matches", TENANT_ADMIN, None),
    ],
)
async def test_redis_unreachable_is_503_with_the_json_error_body(
    client_for: Callable[[Settings], Any],
    unreachable: Settings,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None,
) -> None:
    async with client_for(unreachable) as client:
        response = await client.request(method, path, headers=headers, json=body)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "store_unavailable"


async def test_auth_is_checked_before_redis_is_touched(
    client_for: Callable[[Settings], Any], unreachable: Settings
) -> None:
    async with client_for(unreachable) as client:
        response = await client.get(f"/v1/tenants/{TENANT}/connections")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_healthz_says_unavailable_in_json(
    client_for: Callable[[Settings], Any], unreachable: Settings
) -> None:
    async with client_for(unreachable) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
