"""Bodies an authorised caller sends that cannot be read as JSON: one status and one code
(400 ``malformed_json``) on every operation that takes a body, whatever the reason; 415 for a
body not declared as JSON; nothing stored."""

from __future__ import annotations

import httpx
import pytest

from processors.api import create_api
from processors.settings import Settings

from .conftest import PLATFORM, TENANT, TENANT_ADMIN
from .operations import Operation, operations

BODY_OPERATIONS = [op for op in operations(create_api(Settings()).openapi()) if op.takes_body]

NOT_UTF8 = {
    "lone_continuation_byte": b'{"enabled": "\x80"}',
    "latin1_text": '{"webhook": {"url": "https://exämple.se/hook"}}'.encode("latin-1"),
    "invalid_start_byte": b"\xff{}",
    "truncated_sequence": b'{"enabled": "\xc3"}',
    "utf8_encoded_surrogate": b'{"enabled": "\xed\xa0\x80"}',
    "utf16_with_bom": '{"enabled": true}'.encode("utf-16"),
    "utf16_without_bom": '{"enabled": true}'.encode("utf-16-le"),
    "utf32": '{"enabled": true}'.encode("utf-32"),
}
NOT_JSON = {
    "truncated": b'{"enabled": ',
    "trailing_comma": b'{"enabled": true,}',
    "single_quotes": b"{'enabled': true}",
    "utf8_bom": b'\xef\xbb\xbf{"enabled": true}',
    "two_documents": b'{"enabled": true} {"enabled": false}',
    "integer_over_the_digit_limit": b'{"max_concurrency": ' + b"7" * 5000 + b"}",
    "nesting_too_deep": b'{"event_types": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
}


@pytest.fixture
async def allowed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).status_code == 204
    return client


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
@pytest.mark.parametrize("headers", [TENANT_ADMIN, PLATFORM], ids=["tenant_admin", "platform"])
async def test_one_code_for_every_unreadable_body(
    allowed: httpx.AsyncClient, operation: Operation, headers: dict[str, str]
) -> None:
    for name, body in {**NOT_UTF8, **NOT_JSON}.items():
        for media_type in ("application/json", "application/json; charset=utf-8"):
            response = await allowed.request(
                operation.method,
                operation.path,
                content=body,
                headers={**headers, "Content-Type": media_type},
            )
            assert response.status_code == 400, (name, response.text)
            assert response.json()["error"]["code"] == "malformed_json", name
    listed = await allowed.get(f"/v1/tenants/{TENANT}/connections", headers=PLATFORM)
    assert listed.json() == {"items": []}


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
@pytest.mark.parametrize(
    "media_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_a_body_not_declared_as_json_is_415(
    allowed: httpx.AsyncClient, operation: Operation, media_type: str | None
) -> None:
    headers = dict(TENANT_ADMIN)
    if media_type is not None:
        headers["Content-Type"] = media_type
    for body in (b'{"enabled": true}', b"\xff\xfe"):
        response = await allowed.request(
            operation.method, operation.path, content=body, headers=headers
        )
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
async def test_a_readable_body_that_does_not_validate_is_still_422(
    allowed: httpx.AsyncClient, operation: Operation
) -> None:
    for media_type in ("application/json", "application/merge-patch+json"):
        response = await allowed.request(
            operation.method,
            operation.path,
            content=b'{"no_such_field": 1}',
            headers={**TENANT_ADMIN, "Content-Type": media_type},
        )
        assert response.status_code in {404, 422}, response.text
        if response.status_code == 404:  # the link endpoints need a connection first
            assert response.json()["error"]["code"] == "connection_not_found"
