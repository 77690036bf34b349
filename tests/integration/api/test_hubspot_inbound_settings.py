"""The ``inbound`` block of a HubSpot connection through the API: the client secret stored
sealed, never shown, kept on a replace that leaves it out; malformed blocks refused."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from connectors.hubspot.config import HubSpotConnectionConfig
from processors.secrets import REDACTED, SecretBox
from processors.settings import Settings
from processors.tenants.secret_fields import open_settings

from .conftest import HUBSPOT_BODY, PLATFORM, SEALED_MARK, TENANT, TENANT_ADMIN, connections_key

T = f"/v1/tenants/{TENANT}"
CLIENT_SECRET = "5b1e0c7a-hubspot-inbound-secret-93d2"
CLIENT_SECRET_2 = "0d4f8e21-hubspot-inbound-secret-6a7c"
MINE = (CLIENT_SECRET, CLIENT_SECRET_2)

HUBSPOT_INBOUND: dict[str, Any] = {
    "enabled": True,
    "client_secret": CLIENT_SECRET,
    "interest_property": "queast_interest",
    "interest_values": ["true", "hot"],
    "accept_legacy_signatures": False,
    "ip_allowlist": ["54.174.0.0/16"],
}


@pytest.fixture(autouse=True)
def no_client_secret_leaks(
    caplog: pytest.LogCaptureFixture, response_bodies: list[str]
) -> Iterator[None]:
    """At teardown: neither client secret in a response body or a log record."""
    caplog.set_level(logging.DEBUG)
    yield
    rendered = list(response_bodies)
    for phase in ("setup", "call"):
        rendered += [
            record.getMessage() + json.dumps(vars(record), default=str)
            for record in caplog.get_records(phase)
        ]
    for text in rendered:
        for secret in MINE:
            assert secret not in text


async def allow(client: httpx.AsyncClient) -> None:
    assert (await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)).status_code == 204


async def stored(redis: Redis, settings: Settings) -> dict[str, Any]:
    raw = await redis.hget(connections_key(settings, TENANT), "hubspot")
    assert raw is not None
    assert all(secret.encode() not in raw for secret in MINE)
    document: dict[str, Any] = json.loads(raw)
    return document


def opened(box: SecretBox, record: dict[str, Any]) -> dict[str, Any]:
    return open_settings(
        record["settings"],
        box=box,
        tenant_id=record["tenant_id"],
        connection_id=record["connection_id"],
    )


async def test_hubspot_inbound_is_sealed_redacted_and_kept(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    body = {**HUBSPOT_BODY, "inbound": HUBSPOT_INBOUND}
    created = await client.put(f"{T}/connections/hubspot", json=body, headers=TENANT_ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["inbound"]["client_secret"] == REDACTED
    shown = (await client.get(f"{T}/connections/hubspot", headers=TENANT_ADMIN)).json()
    assert shown["settings"]["inbound"] == {**HUBSPOT_INBOUND, "client_secret": REDACTED}
    listed = (await client.get(f"{T}/connections", headers=TENANT_ADMIN)).text
    assert REDACTED in listed

    record = await stored(redis_client, api_settings)
    sealed = record["settings"]["inbound"]["client_secret"]
    assert sealed.startswith(SEALED_MARK)
    plain = opened(box, record)
    assert plain["inbound"]["client_secret"] == CLIENT_SECRET
    config = HubSpotConnectionConfig.validate_for_connection(plain)
    assert config.inbound is not None
    assert config.inbound.client_secret.get_secret_value() == CLIENT_SECRET
    assert config.inbound.accept_legacy_signatures is False

    # A replace without the client secret keeps the sealed one; a new one replaces it.
    keep = copy.deepcopy(body)
    del keep["inbound"]["client_secret"]
    keep["inbound"]["interest_values"] = ["yes"]
    replaced = await client.put(f"{T}/connections/hubspot", json=keep, headers=TENANT_ADMIN)
    assert replaced.status_code == 200, replaced.text
    record = await stored(redis_client, api_settings)
    assert record["settings"]["inbound"]["client_secret"] == sealed
    assert record["settings"]["inbound"]["interest_values"] == ["yes"]
    change = copy.deepcopy(body)
    change["inbound"]["client_secret"] = CLIENT_SECRET_2
    assert (
        await client.put(f"{T}/connections/hubspot", json=change, headers=TENANT_ADMIN)
    ).status_code == 200
    record = await stored(redis_client, api_settings)
    assert opened(box, record)["inbound"]["client_secret"] == CLIENT_SECRET_2


async def test_the_inbound_block_takes_the_documented_defaults(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    inbound = {"enabled": True, "client_secret": CLIENT_SECRET}
    created = await client.put(
        f"{T}/connections/hubspot", json={**HUBSPOT_BODY, "inbound": inbound}, headers=TENANT_ADMIN
    )
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["inbound"] == {
        "enabled": True,
        "client_secret": REDACTED,
        "interest_property": "queast_interest",
        "interest_values": ["true"],
        "accept_legacy_signatures": True,
        "ip_allowlist": [],
    }
    config = HubSpotConnectionConfig.validate_for_connection(
        opened(box, await stored(redis_client, api_settings))
    )
    assert config.inbound is not None
    assert config.inbound.enabled is True


async def test_hubspot_inbound_without_a_client_secret_on_create_is_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await allow(client)
    inbound = {k: v for k, v in HUBSPOT_INBOUND.items() if k != "client_secret"}
    refused = await client.put(
        f"{T}/connections/hubspot", json={**HUBSPOT_BODY, "inbound": inbound}, headers=TENANT_ADMIN
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [
        {"loc": ["body", "inbound", "client_secret"], "msg": "Field required"}
    ]
    assert await redis_client.hget(connections_key(api_settings, TENANT), "hubspot") is None


@pytest.mark.parametrize(
    "change",
    [
        {"client_secret": ""},
        {"client_secret": "   "},
        {"client_secret": REDACTED},
        {"client_secret": SEALED_MARK + "abc"},
        {"client_secret": "s" * 257},
        {"interest_property": "Not A Property"},
        {"interest_values": []},
        {"interest_values": ["v"] * 101},
        {"accept_legacy_signatures": "sometimes"},
        {"ip_allowlist": ["not-a-network"]},
        {"extra": True},
    ],
)
async def test_malformed_hubspot_inbound_blocks_are_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, change: dict[str, Any]
) -> None:
    await allow(client)
    refused = await client.put(
        f"{T}/connections/hubspot",
        json={**HUBSPOT_BODY, "inbound": {**HUBSPOT_INBOUND, **change}},
        headers=TENANT_ADMIN,
    )
    assert refused.status_code == 422
    assert await redis_client.hget(connections_key(api_settings, TENANT), "hubspot") is None


async def test_openapi_documents_the_hubspot_inbound_block(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "inbound" in schemas["HubSpotConnectionIn"]["properties"]
    secret = schemas["HubSpotInboundIn"]["properties"]["client_secret"]
    assert secret["writeOnly"] is True
    assert secret["maxLength"] == 256
    assert "client_secret" in schemas["HubSpotInboundIn"]["required"]
