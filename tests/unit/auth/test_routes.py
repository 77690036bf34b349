"""Access-first route classes: the access check runs before the body is read, the token is
verified once per request, and body errors come only after access is granted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from processors.auth import (
    Principal,
    TokenVerifier,
    require_platform_admin,
    require_tenant_access,
)
from processors.auth.routes import PlatformAdminRoute, TenantRoute, tenant_api_router
from processors.errors import install_error_handlers

from .conftest import SECRET, TokenFactory


class _Note(BaseModel):
    text: str


class _CountingVerifier(TokenVerifier):
    """The HS256 verifier, counting its verifications."""

    calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return await super().verify(token)


@pytest.fixture
def verifier() -> _CountingVerifier:
    return _CountingVerifier(hs256_secret=SECRET.encode(), leeway_seconds=0)


@pytest.fixture
async def client(verifier: _CountingVerifier) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.token_verifier = verifier
    install_error_handlers(app)
    tenants = APIRouter(prefix="/tenants/{tenant_id}", route_class=TenantRoute)
    admin = APIRouter(prefix="/admin", route_class=PlatformAdminRoute)

    @tenants.put("/notes")
    async def put_note(
        tenant_id: str,
        note: _Note,
        principal: Annotated[Principal, Depends(require_tenant_access)],
    ) -> dict[str, str]:
        return {"tenant_id": tenant_id, "text": note.text, "sub": principal.sub}

    @admin.put("/notes")
    async def put_admin_note(
        note: _Note, _p: Annotated[Principal, Depends(require_platform_admin)]
    ) -> dict[str, str]:
        return {"text": note.text}

    app.include_router(tenants)
    app.include_router(admin)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def test_an_allowed_caller_is_verified_once(
    client: httpx.AsyncClient, verifier: _CountingVerifier, hs_token: TokenFactory
) -> None:
    response = await client.put(
        "/tenants/t_a/notes", content=b'{"text": "hi"}', headers=bearer(hs_token())
    )
    assert response.status_code == 200
    assert response.json() == {"tenant_id": "t_a", "text": "hi", "sub": "user-1"}
    assert verifier.calls == 1


@pytest.mark.parametrize("body", [b'{"text": ', b"\xff", b"[]", b'{"text": "hi"}'])
async def test_access_is_refused_before_the_body_is_judged(
    client: httpx.AsyncClient, hs_token: TokenFactory, body: bytes
) -> None:
    no_token = await client.put(
        "/tenants/t_a/notes", content=body, headers={"Content-Type": "application/json"}
    )
    assert no_token.status_code == 401
    other_tenant = await client.put("/tenants/t_b/notes", content=body, headers=bearer(hs_token()))
    assert other_tenant.status_code == 403
    not_admin = await client.put("/admin/notes", content=body, headers=bearer(hs_token()))
    assert not_admin.status_code == 403


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"text": ', "application/json", 400, "malformed_json"),
        (b'{"text": "\xe9"}', "application/json", 400, "malformed_json"),
        (b'{"text": "hi"}', "text/plain", 415, "unsupported_media_type"),
        (b"[]", "application/json", 422, "validation_failed"),
    ],
)
async def test_body_errors_once_access_is_granted(
    client: httpx.AsyncClient,
    hs_token: TokenFactory,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    headers = {**bearer(hs_token(roles=["platform_admin"])), "Content-Type": content_type}
    for path in ("/tenants/t_a/notes", "/admin/notes"):
        response = await client.put(path, content=body, headers=headers)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


async def test_a_tenant_api_router_checks_access_first_and_documents_its_errors(
    verifier: _CountingVerifier, hs_token: TokenFactory
) -> None:
    app = FastAPI()
    app.state.token_verifier = verifier
    install_error_handlers(app)
    notes = tenant_api_router("/notes", tag="notes", descriptions={404: "`note_not_found`: none"})

    @notes.put("")
    async def put_note(
        tenant_id: str, note: _Note, _p: Annotated[Principal, Depends(require_tenant_access)]
    ) -> dict[str, str]:
        return {"tenant_id": tenant_id, "text": note.text}

    app.include_router(notes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        other_tenant = await http.put(
            "/v1/tenants/t_b/notes", content=b'{"text": ', headers=bearer(hs_token())
        )
        own = await http.put(
            "/v1/tenants/t_a/notes", content=b'{"text": "hi"}', headers=bearer(hs_token())
        )
    assert other_tenant.status_code == 403
    assert own.status_code == 200
    assert own.json() == {"tenant_id": "t_a", "text": "hi"}
    operation = app.openapi()["paths"]["/v1/tenants/{tenant_id}/notes"]["put"]
    assert operation["tags"] == ["notes"]
    assert {"401", "403", "404", "422", "503"} <= set(operation["responses"])
    assert operation["responses"]["404"]["description"] == "`note_not_found`: none"
