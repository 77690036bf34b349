"""A caller without access learns nothing from a body: every operation answers it 401 or 403,
the same answer whatever the body holds (malformed, not UTF-8, not JSON, huge, or valid)."""

from __future__ import annotations

import httpx
import pytest

from processors.api import MAX_BODY_BYTES, create_api
from processors.settings import Settings

from .conftest import JWT_SECRET, OTHER_ADMIN, TENANT_ADMIN, auth, make_token
from .operations import Operation, operations

OPERATIONS = [op for op in operations(create_api(Settings()).openapi()) if op.secured]

BODIES: dict[str, tuple[bytes, str | None]] = {
    "valid_json": (b'{"partner_object_id": "p_1", "enabled": true}', "application/json"),
    "malformed_json": (b'{"webhook": {"url": ', "application/json"),
    "not_utf8": (b'{"webhook": {"url": "\xff\xfe"}}', "application/json"),
    "utf16": ('{"enabled": true}'.encode("utf-16"), "application/json"),
    "not_json_media_type": (b"enabled=true", "application/x-www-form-urlencoded"),
    "no_media_type": (b'{"enabled": true}', None),
    "json_array": (b"[1, 2, 3]", "application/json"),
    "huge_integer": (b'{"max_concurrency": ' + b"9" * 5000 + b"}", "application/json"),
    "deep_nesting": (b"[" * 20_000 + b"]" * 20_000, "application/json"),
    "over_the_limit": (b'{"x": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}', "application/json"),
}

UNAUTHENTICATED = {
    "no_token": {},
    "malformed_token": {"Authorization": "Bearer not-a-jwt"},
    "wrong_signature": auth(make_token(secret=JWT_SECRET[::-1])),
}


def _request(
    client: httpx.AsyncClient, operation: Operation, body: str, headers: dict[str, str]
) -> httpx.Request:
    content, media_type = BODIES[body]
    sent = dict(headers)
    if media_type is not None:
        sent["Content-Type"] = media_type
    return client.build_request(operation.method, operation.path, content=content, headers=sent)


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_unauthenticated_callers_get_401_whatever_the_body(
    client: httpx.AsyncClient, operation: Operation
) -> None:
    for caller, headers in UNAUTHENTICATED.items():
        answers = set()
        for body in BODIES:
            response = await client.send(_request(client, operation, body, headers))
            answers.add((response.status_code, response.text))
        assert len(answers) == 1, (caller, answers)
        ((status, text),) = answers
        assert status == 401, (caller, text)


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_unauthorised_callers_get_403_whatever_the_body(
    client: httpx.AsyncClient, operation: Operation
) -> None:
    """Another tenant's admin, a token with no known role, and (for the allowlist) a tenant
    admin: one 403 body for every body."""
    callers = {
        "other_tenant_admin": OTHER_ADMIN,
        "no_known_role": auth(make_token(roles=["viewer"], exp_in=86_400)),
    }
    if operation.platform_only:
        callers["tenant_admin"] = TENANT_ADMIN
    for caller, headers in callers.items():
        answers = {
            (response.status_code, response.text)
            for body in BODIES
            for response in [await client.send(_request(client, operation, body, headers))]
        }
        assert len(answers) == 1, (caller, answers)
        ((status, text),) = answers
        assert status == 403, (caller, text)
        assert '"code":"forbidden"' in text
