"""405 answers list in ``Allow`` every method the path answers, not only the first route's."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import compile_path

from .conftest import PLATFORM, TENANT
from .operations import operations

T = f"/v1/tenants/{TENANT}"


@pytest.mark.parametrize(
    ("path", "refused", "allowed"),
    [
        (f"{T}/connections/webhook", ["POST", "PATCH"], {"GET", "PUT", "DELETE"}),
        (f"{T}/connections/hubspot", ["POST"], {"GET", "PUT", "DELETE"}),
        (f"{T}/connections/pipedrive", ["PATCH"], {"GET", "PUT", "DELETE"}),
        (f"/admin/v1/allowlist/{TENANT}", ["POST", "PATCH"], {"GET", "PUT", "DELETE"}),
        (f"{T}/connections", ["POST", "PUT", "DELETE"], {"GET"}),
        (f"{T}/deliveries", ["POST"], {"GET"}),
        (f"{T}/connections/hubspot/matches", ["POST", "DELETE"], {"GET"}),
        (f"{T}/connections/hubspot/matches/company/co_1", ["GET", "POST"], {"PUT", "DELETE"}),
        (f"{T}/connections/pipedrive/matches/person/p_1/confirm", ["GET", "PUT"], {"POST"}),
    ],
)
@pytest.mark.parametrize("headers", [{}, PLATFORM], ids=["anonymous", "platform_admin"])
async def test_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient,
    path: str,
    refused: list[str],
    allowed: set[str],
    headers: dict[str, str],
) -> None:
    for method in refused:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 405, (method, response.text)
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed, method
        assert response.json()["error"]["code"] == "method_not_allowed"


async def test_every_documented_method_is_in_allow(client: httpx.AsyncClient) -> None:
    """For each documented path, a method it does not answer gets 405 listing exactly the
    methods documented for every template that path matches."""
    spec = (await client.get("/openapi.json")).json()
    secured = [op for op in operations(spec) if op.secured]
    for operation in secured:
        expected = {
            other.method
            for other in secured
            if compile_path(other.template)[0].match(operation.path)
        }
        response = await client.request("PATCH", operation.path, headers=PLATFORM)
        assert response.status_code == 405, operation
        assert {m.strip() for m in response.headers["allow"].split(",")} == expected, operation
