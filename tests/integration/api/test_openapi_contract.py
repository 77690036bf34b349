"""The OpenAPI document tells the truth: every status an operation answers is listed with the
error body's schema, and a connection body is valid by the schema exactly when the service
accepts it (checked by taking fields out of accepted bodies, one at a time)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from .conftest import (
    HUBSPOT_BODY,
    HUBSPOT_CLIENT_SECRET,
    HUBSPOT_REFRESH_TOKEN,
    PIPEDRIVE_BODY,
    PIPEDRIVE_CLIENT_SECRET,
    PIPEDRIVE_REFRESH_TOKEN,
    PIPEDRIVE_TOKEN,
    PLATFORM,
    WEBHOOK_BODY,
    WHSEC,
)
from .operations import operations

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
WEBHOOK_BLOCK = {"url": "http://127.0.0.1:8900/hook", "secret": WHSEC}

ACCEPTED_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "webhook": ("webhook", WEBHOOK_BODY),
    "hubspot_private_app": ("hubspot", HUBSPOT_BODY),
    "hubspot_oauth_both": (
        "hubspot",
        {
            "delivery_mode": "both",
            "auth": {
                "type": "oauth",
                "client_id": "hubspot-client-1",
                "client_secret": HUBSPOT_CLIENT_SECRET,
                "refresh_token": HUBSPOT_REFRESH_TOKEN,
            },
            "webhook": WEBHOOK_BLOCK,
            "tier": "professional_enterprise",
            "match_policy": {"company_strategies": ["domain", "company_name"]},
        },
    ),
    "hubspot_webhook_only": ("hubspot", {"delivery_mode": "webhook", "webhook": WEBHOOK_BLOCK}),
    "pipedrive_api_token": ("pipedrive", PIPEDRIVE_BODY),
    "pipedrive_oauth": (
        "pipedrive",
        {
            "auth": {
                "type": "oauth",
                "client_id": "pipedrive-client-1",
                "client_secret": PIPEDRIVE_CLIENT_SECRET,
                "refresh_token": PIPEDRIVE_REFRESH_TOKEN,
                "api_domain": "https://acme.pipedrive.com",
            },
            "domain_field_key": "org_domain_key_1",
            "plan": "growth",
        },
    ),
    "pipedrive_webhook_with_auth": (
        "pipedrive",
        {
            "delivery_mode": "webhook",
            "webhook": WEBHOOK_BLOCK,
            "auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN},
            "domain_field_key": "org_domain_key_1",
        },
    ),
}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    document = (await client.get("/openapi.json")).json()
    assert isinstance(document, dict)
    return document


def _without(body: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    trimmed = copy.deepcopy(body)
    target = trimmed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return trimmed


def _key_paths(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in body.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _key_paths(value, (*prefix, key))


def _status_schema(operation: dict[str, Any], status: int) -> Any:
    response = operation["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


async def test_every_secured_operation_lists_its_error_statuses(spec: dict[str, Any]) -> None:
    for operation in operations(spec):
        if not operation.secured:
            continue
        expected = {401, 403, 422, 503}
        if operation.takes_body:
            expected |= {400, 408, 413, 415}
        if "{connector}" in operation.template:
            expected.add(404)
        listed = {int(s) for s in operation.spec["responses"] if s.startswith(("4", "5"))}
        assert expected <= listed, (str(operation), sorted(expected - listed))
        for status in listed:
            assert _status_schema(operation.spec, status) == ERROR_SCHEMA, (str(operation), status)
        assert "WWW-Authenticate" in operation.spec["responses"]["401"]["headers"]


async def test_statuses_name_their_codes(spec: dict[str, Any]) -> None:
    connection = spec["paths"]["/v1/tenants/{tenant_id}/connections/{connector}"]
    for method in ("get", "delete"):
        assert "connection_not_found" in connection[method]["responses"]["404"]["description"]
    put = spec["paths"]["/v1/tenants/{tenant_id}/connections/webhook"]["put"]
    assert "malformed_json" in put["responses"]["400"]["description"]
    assert "tenant_not_allowlisted" in put["responses"]["403"]["description"]
    assert "stored_secret_unreadable" in put["responses"]["409"]["description"]
    deliveries = spec["paths"]["/v1/tenants/{tenant_id}/deliveries"]["get"]
    assert "invalid_cursor" in deliveries["responses"]["400"]["description"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_the_fields_the_service_requires_are_required_in_the_schema(
    spec: dict[str, Any],
) -> None:
    schemas = spec["components"]["schemas"]
    assert {"url", "secret"} <= set(schemas["WebhookEndpointIn"]["required"])
    assert "token" in schemas["HubSpotPrivateApp"]["required"]
    assert "token" in schemas["PipedriveApiToken"]["required"]
    for name in ("HubSpotOAuth", "PipedriveOAuth"):
        assert {"client_secret", "refresh_token"} <= set(schemas[name]["required"])
    for name in ("HubSpotConnectionIn", "PipedriveConnectionIn"):
        required_by_mode = [set(branch["required"]) for branch in schemas[name]["anyOf"]]
        assert all("auth" in r or "webhook" in r for r in required_by_mode)
    assert schemas["PipedriveConnectionIn"]["dependentRequired"] == {"auth": ["domain_field_key"]}


@pytest.mark.parametrize("variant", list(ACCEPTED_BODIES))
async def test_a_body_is_schema_valid_exactly_when_the_service_creates_from_it(
    client: httpx.AsyncClient, spec: dict[str, Any], variant: str
) -> None:
    """Each field taken out of an accepted body, one at a time, on a tenant with no connection
    yet: the schema and the service agree on whether the rest is enough."""
    connector, body = ACCEPTED_BODIES[variant]
    operation = spec["paths"][f"/v1/tenants/{{tenant_id}}/connections/{connector}"]["put"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**body_schema, "components": spec["components"]})
    trials = [("whole body", body)] + [
        ("without " + ".".join(path), _without(body, path)) for path in _key_paths(body)
    ]
    for number, (label, trial) in enumerate(trials):
        tenant = f"t_contract_{number}"
        response = await client.put(
            f"/v1/tenants/{tenant}/connections/{connector}", json=trial, headers=PLATFORM
        )
        assert response.status_code in {201, 422}, (label, response.text)
        created = response.status_code == 201
        assert validator.is_valid(trial) == created, (label, response.text)
