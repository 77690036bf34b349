"""Bad requests: refused with 400/413/422, and no input value (no secret) ever echoed."""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from processors.api import MAX_BODY_BYTES
from processors.secrets import REDACTED
from processors.settings import Settings, WebhookSettings

from .conftest import (
    HUBSPOT_BODY,
    PIPEDRIVE_BODY,
    PLATFORM,
    SECRETS,
    TENANT,
    TENANT_ADMIN,
    WEBHOOK_BODY,
    WHSEC,
)

T = f"/v1/tenants/{TENANT}"
# secrets that are invalid on purpose; they must not come back either
BAD_WHSEC_SHORT = "whsec_" + base64.b64encode(b"too-short-secret").decode()
BAD_WHSEC_PREFIX = "wsec_" + base64.b64encode(b"integration-webhook-secret-9-32b").decode()
STRAY_SECRET = "stray-secret-value-0b7d2e19"


def with_webhook(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(WEBHOOK_BODY)
    body["webhook"].update(changes)
    return body


def assert_no_echo(response: httpx.Response, *values: str) -> None:
    for value in (*values, *SECRETS, BAD_WHSEC_SHORT, BAD_WHSEC_PREFIX, STRAY_SECRET):
        assert value not in response.text


@pytest.fixture
async def allowed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).status_code == 204
    return client


@pytest.fixture
async def strict_client(
    client_for: Callable[[Settings], Any], api_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS off (the production default)."""
    settings = api_settings.model_copy(
        update={"webhook": WebhookSettings(allow_private_networks=False)}
    )
    async with client_for(settings) as http:
        assert (
            await http.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
        ).status_code == 204
        yield http


@pytest.mark.parametrize("secret", [BAD_WHSEC_SHORT, BAD_WHSEC_PREFIX, "whsec_!!!not-base64!!!"])
async def test_bad_whsec_secret(allowed: httpx.AsyncClient, secret: str) -> None:
    response = await allowed.put(
        f"{T}/connections/webhook", json=with_webhook(secret=secret), headers=TENANT_ADMIN
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"][0]["loc"] == ["body", "webhook", "secret"]
    assert_no_echo(response, secret, secret.removeprefix("whsec_"))


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/queast",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://2130706433/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://LOCALHOST./hook",
        "https://100.64.0.1/hook",
    ],
)
async def test_private_or_plain_http_url_refused_without_the_flag(
    strict_client: httpx.AsyncClient, url: str
) -> None:
    response = await strict_client.put(
        f"{T}/connections/webhook", json=with_webhook(url=url), headers=TENANT_ADMIN
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "webhook", "url"]
    assert_no_echo(response)


async def test_public_https_url_accepted_without_the_flag(strict_client: httpx.AsyncClient) -> None:
    response = await strict_client.put(
        f"{T}/connections/webhook",
        json=with_webhook(url="https://hooks.example.com/queast"),
        headers=TENANT_ADMIN,
    )
    assert response.status_code == 201
    assert response.json()["settings"]["webhook"]["url"] == "https://hooks.example.com/queast"


async def test_url_with_credentials_refused(allowed: httpx.AsyncClient) -> None:
    url = f"https://user:{STRAY_SECRET}@hooks.example.com/x"
    response = await allowed.put(
        f"{T}/connections/webhook", json=with_webhook(url=url), headers=TENANT_ADMIN
    )
    assert response.status_code == 422
    assert_no_echo(response)


async def test_unknown_event_type(allowed: httpx.AsyncClient) -> None:
    body = copy.deepcopy(WEBHOOK_BODY)
    body["event_types"] = {"company.exploded": True}
    response = await allowed.put(f"{T}/connections/webhook", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"][:2] == ["body", "event_types"]
    assert_no_echo(response)


@pytest.mark.parametrize(
    ("connector", "body"),
    [
        ("webhook", {**WEBHOOK_BODY, "api_key": STRAY_SECRET}),
        ("webhook", with_webhook(password=STRAY_SECRET)),
        ("hubspot", {**HUBSPOT_BODY, "auth": {**HUBSPOT_BODY["auth"], "extra": STRAY_SECRET}}),
        ("webhook", {**WEBHOOK_BODY, "delivery_mode": "api"}),
        ("hubspot", {**HUBSPOT_BODY, "auth": {"type": "oauth", "client_id": "c"}, "x": 1}),
        ("hubspot", {**HUBSPOT_BODY, "auth": {"type": STRAY_SECRET, "token": STRAY_SECRET}}),
        (
            "pipedrive",
            {"auth": {"type": "oauth", "client_id": "c", "api_domain": "https://evil.com"}},
        ),
        ("pipedrive", {"auth": {"type": "api_token", "token": 12345678}}),
        ("webhook", with_webhook(secret=REDACTED)),
        ("webhook", with_webhook(secret="whsec_" + REDACTED)),
        ("hubspot", {**HUBSPOT_BODY, "auth": {"type": "private_app", "token": "qi-enc:v1:k:x:y"}}),
        ("webhook", {**WEBHOOK_BODY, "rate_limit_per_second": 0}),
        ("webhook", {**WEBHOOK_BODY, "max_concurrency": 1000}),
        ("webhook", with_webhook(secret=None, url=None)),
    ],
)
async def test_invalid_bodies(
    allowed: httpx.AsyncClient, connector: str, body: dict[str, Any]
) -> None:
    response = await allowed.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"]
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg"}
    assert_no_echo(response)


async def test_nothing_stored_after_a_refusal(allowed: httpx.AsyncClient) -> None:
    await allowed.put(
        f"{T}/connections/webhook", json=with_webhook(secret=BAD_WHSEC_SHORT), headers=TENANT_ADMIN
    )
    assert (await allowed.get(f"{T}/connections", headers=TENANT_ADMIN)).json() == {"items": []}


async def test_malformed_json(allowed: httpx.AsyncClient) -> None:
    response = await allowed.put(
        f"{T}/connections/webhook",
        content=b'{"webhook": {"secret": "' + WHSEC.encode() + b'"',
        headers={**TENANT_ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "malformed_json", "message": "request body is not valid JSON"}
    }


async def test_not_an_object(allowed: httpx.AsyncClient) -> None:
    response = await allowed.put(f"{T}/connections/webhook", json=[WHSEC], headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert_no_echo(response)


async def test_oversized_body_declared(allowed: httpx.AsyncClient) -> None:
    body = with_webhook()
    body["padding"] = "x" * (MAX_BODY_BYTES + 1)
    response = await allowed.put(f"{T}/connections/webhook", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert_no_echo(response)


async def test_oversized_body_streamed_without_length(allowed: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"webhook": {"secret": "' + WHSEC.encode() + b'", "url": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}}'

    response = await allowed.put(
        f"{T}/connections/webhook",
        content=chunks(),
        headers={**TENANT_ADMIN, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert_no_echo(response)


async def test_body_at_the_limit_is_read(allowed: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"enabled": true, '
        yield b'"webhook": {"url": "http://127.0.0.1:8900/hook", "secret": "' + WHSEC.encode()
        yield b'"}}'

    response = await allowed.put(
        f"{T}/connections/webhook",
        content=chunks(),
        headers={**TENANT_ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 201


async def test_bad_content_length(allowed: httpx.AsyncClient) -> None:
    response = await allowed.put(
        f"{T}/connections/webhook",
        content=b"{}",
        headers={**TENANT_ADMIN, "Content-Type": "application/json", "Content-Length": "nope"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tenants/t%20a/connections"),
        ("GET", f"/v1/tenants/{'x' * 65}/connections"),
        ("PUT", "/admin/v1/allowlist/bad%2Fid"),
        ("GET", f"{T}/connections/salesforce"),
        ("PUT", f"{T}/connections/salesforce"),
        ("DELETE", f"{T}/connections/salesforce"),
    ],
)
async def test_bad_path_parameters(allowed: httpx.AsyncClient, method: str, path: str) -> None:
    response = await allowed.request(method, path, json={}, headers=PLATFORM)
    assert (response.status_code, response.json()["error"]["code"]) in {
        (404, "not_found"),
        (422, "validation_failed"),
    }


async def test_unknown_route_and_method_use_the_error_shape(allowed: httpx.AsyncClient) -> None:
    missing = await allowed.get("/v1/nothing-here", headers=PLATFORM)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong = await allowed.post(f"{T}/connections/webhook", json={}, headers=PLATFORM)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "PUT" in wrong.headers["allow"]


@pytest.mark.parametrize(
    ("connector", "changes", "loc"),
    [
        ("hubspot", {"queast_id_property": "Queast ID"}, ["body", "queast_id_property"]),
        ("hubspot", {"note_id_property": "9notes"}, ["body", "note_id_property"]),
        ("hubspot", {"tier": "enterprise_plus"}, ["body", "tier"]),
        (
            "hubspot",
            {"match_policy": {"auto_link_threshold": 1.5}},
            ["body", "match_policy", "auto_link_threshold"],
        ),
        (
            "hubspot",
            {"match_policy": {"company_strategies": ["domain", "email"]}},
            ["body", "match_policy", "company_strategies"],
        ),
        (
            "hubspot",
            {"match_policy": {"person_strategies": ["email", "email"]}},
            ["body", "match_policy", "person_strategies"],
        ),
        ("hubspot", {"match_policy": {"strategies": ["domain"]}}, ["body", "match_policy"]),
        ("hubspot", {"base_url": "https://evil.example.com"}, ["body", "base_url"]),
        ("hubspot", {"timeout_seconds": 5}, ["body", "timeout_seconds"]),
        ("hubspot", {"plan": "lite"}, ["body", "plan"]),
        ("pipedrive", {"plan": "enterprise"}, ["body", "plan"]),
        ("pipedrive", {"daily_budget": -1}, ["body", "daily_budget"]),
        ("pipedrive", {"domain_field_key": "not a key"}, ["body", "domain_field_key"]),
        ("pipedrive", {"domain_field_key": None}, ["body", "domain_field_key"]),
        ("pipedrive", {"queast_id_field_key": "x" * 65}, ["body", "queast_id_field_key"]),
        ("pipedrive", {"tier": "oauth_app"}, ["body", "tier"]),
        ("pipedrive", {"match_policy": {"ambiguity_margin": -0.1}}, ["body", "match_policy"]),
        ("webhook", {"match_policy": {}}, ["body", "match_policy"]),
        ("webhook", {"tier": "oauth_app"}, ["body", "tier"]),
    ],
)
async def test_bad_partner_options_name_the_field(
    allowed: httpx.AsyncClient, connector: str, changes: dict[str, Any], loc: list[str]
) -> None:
    base = {"hubspot": HUBSPOT_BODY, "pipedrive": PIPEDRIVE_BODY, "webhook": WEBHOOK_BODY}
    body = {**base[connector], **changes}
    response = await allowed.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(detail["loc"][: len(loc)] == loc for detail in error["details"]), error
    assert_no_echo(response)
    assert (await allowed.get(f"{T}/connections", headers=TENANT_ADMIN)).json() == {"items": []}
