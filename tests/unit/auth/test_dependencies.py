"""The FastAPI dependencies: 401 with WWW-Authenticate, 403 by role and by tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from processors.auth import (
    Principal,
    Role,
    TokenVerifier,
    current_principal,
    require_platform_admin,
    require_tenant_access,
)
from processors.errors import install_error_handlers

from .conftest import TokenFactory


@pytest.fixture
async def client(hs_verifier: TokenVerifier) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.token_verifier = hs_verifier
    install_error_handlers(app)

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"sub": principal.sub}

    @app.get("/admin")
    async def admin(_p: Annotated[Principal, Depends(require_platform_admin)]) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/tenants/{tenant_id}")
    async def tenant(
        tenant_id: str, _p: Annotated[Principal, Depends(require_tenant_access)]
    ) -> dict[str, str]:
        return {"tenant_id": tenant_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": ""},
    ],
)
async def test_missing_token_is_401_with_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {
        "error": {"code": "missing_token", "message": "a bearer token is required"}
    }


async def test_invalid_token_is_401_with_challenge(
    client: httpx.AsyncClient, hs_token: TokenFactory
) -> None:
    response = await client.get("/me", headers=bearer(hs_token(secret="x" * 64)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"]["code"] == "invalid_token"


async def test_valid_token(client: httpx.AsyncClient, hs_token: TokenFactory) -> None:
    response = await client.get("/me", headers=bearer(hs_token()))
    assert response.status_code == 200
    assert response.json() == {"sub": "user-1"}


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"roles": ["platform_admin"], "tenant_id": ...}, 200),
        ({"roles": ["platform_admin", "tenant_admin"]}, 200),
        ({"roles": ["tenant_admin"]}, 403),
        ({"roles": ["viewer"]}, 403),
        ({"roles": []}, 403),
    ],
)
async def test_require_platform_admin(
    client: httpx.AsyncClient, hs_token: TokenFactory, claims: dict[str, object], expected: int
) -> None:
    response = await client.get("/admin", headers=bearer(hs_token(**claims)))
    assert response.status_code == expected


@pytest.mark.parametrize(
    ("claims", "path", "expected"),
    [
        ({"roles": ["tenant_admin"], "tenant_id": "t_a"}, "/tenants/t_a", 200),
        ({"roles": ["tenant_admin"], "tenant_id": "t_a"}, "/tenants/t_b", 403),
        ({"roles": ["platform_admin"], "tenant_id": ...}, "/tenants/t_b", 200),
        ({"roles": ["platform_admin"], "tenant_id": "t_a"}, "/tenants/t_b", 200),
        ({"roles": ["viewer"], "tenant_id": "t_a"}, "/tenants/t_a", 403),
        ({"roles": [], "tenant_id": "t_a"}, "/tenants/t_a", 403),
    ],
)
async def test_require_tenant_access(
    client: httpx.AsyncClient,
    hs_token: TokenFactory,
    claims: dict[str, object],
    path: str,
    expected: int,
) -> None:
    response = await client.get(path, headers=bearer(hs_token(**claims)))
    assert response.status_code == expected


async def test_cross_tenant_body_is_fixed(
    client: httpx.AsyncClient, hs_token: TokenFactory
) -> None:
    token = bearer(hs_token(tenant_id="t_a"))
    bodies = {(await client.get(f"/tenants/{t}", headers=token)).text for t in ("t_b", "t_c")}
    assert bodies == {'{"error":{"code":"forbidden","message":"not allowed for this tenant"}}'}


def test_principal_rules() -> None:
    tenant_admin = Principal(sub="u", tenant_id="t_a", roles=frozenset({Role.TENANT_ADMIN}))
    platform_admin = Principal(sub="u", roles=frozenset({Role.PLATFORM_ADMIN}))
    nobody = Principal(sub="u", tenant_id="t_a")
    assert tenant_admin.can_access_tenant("t_a")
    assert not tenant_admin.can_access_tenant("t_b")
    assert platform_admin.can_access_tenant("t_b")
    assert not nobody.can_access_tenant("t_a")


async def test_app_without_verifier_is_a_wiring_error(hs_token: TokenFactory) -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> str:
        return principal.sub

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(RuntimeError, match="no token verifier"):
            await http.get("/me", headers=bearer(hs_token()))
