"""The ``inbound`` blocks of Pipedrive and webhook connections through the API: stored sealed,
shown redacted, kept on a replace that leaves a secret out, refused when malformed."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from connectors.pipedrive.config import PipedriveConnectionConfig
from connectors.webhook.config import WebhookInbound
from processors.secrets import REDACTED, SecretBox
from processors.settings import Settings
from processors.tenants.secret_fields import open_settings

from .conftest import (
    PIPEDRIVE_BODY,
    PLATFORM,
    SEALED_MARK,
    TENANT,
    TENANT_ADMIN,
    WEBHOOK_BODY,
    connections_key,
)

T = f"/v1/tenants/{TENANT}"
INBOUND_PASSWORD = "pipedrive-inbound-basic-password-8c41"
INBOUND_PASSWORD_2 = "pipedrive-inbound-basic-password-2f07"
INBOUND_WHSEC = "whsec_" + base64.b64encode(b"integration-inbound-secret-32by!").decode()
MINE = (INBOUND_PASSWORD, INBOUND_PASSWORD_2, INBOUND_WHSEC, INBOUND_WHSEC.removeprefix("whsec_"))
KEY = "9f3c2a1b4d5e6f708192a3b4c5d6e7f809a1b2c3"

PIPEDRIVE_INBOUND: dict[str, Any] = {
    "enabled": True,
    "username": "queast-hook",
    "password": INBOUND_PASSWORD,
    "interest_field_key": KEY,
    "interest_values": ["37"],
    "ip_allowlist": ["185.166.140.0/22"],
}


@pytest.fixture(autouse=True)
def no_inbound_secret_leaks(
    caplog: pytest.LogCaptureFixture, response_bodies: list[str]
) -> Iterator[None]:
    """At teardown: none of this module's secrets in a response body or a log record."""
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


async def stored(redis: Redis, settings: Settings, connector: str) -> dict[str, Any]:
    raw = await redis.hget(connections_key(settings, TENANT), connector)
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


async def test_pipedrive_inbound_is_sealed_redacted_and_kept(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    body = {**PIPEDRIVE_BODY, "inbound": PIPEDRIVE_INBOUND}
    created = await client.put(f"{T}/connections/pipedrive", json=body, headers=TENANT_ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["inbound"]["password"] == REDACTED
    shown = (await client.get(f"{T}/connections/pipedrive", headers=TENANT_ADMIN)).json()
    assert shown["settings"]["inbound"] == {**PIPEDRIVE_INBOUND, "password": REDACTED}

    record = await stored(redis_client, api_settings, "pipedrive")
    sealed = record["settings"]["inbound"]["password"]
    assert sealed.startswith(SEALED_MARK)
    plain = opened(box, record)
    assert plain["inbound"]["password"] == INBOUND_PASSWORD
    config = PipedriveConnectionConfig.validate_for_connection(plain)
    assert config.inbound is not None
    assert config.inbound.password.get_secret_value() == INBOUND_PASSWORD

    # A replace without the password keeps the sealed one; a new one replaces it.
    keep = copy.deepcopy(body)
    del keep["inbound"]["password"]
    keep["inbound"]["interest_values"] = ["37", "41"]
    assert (
        await client.put(f"{T}/connections/pipedrive", json=keep, headers=TENANT_ADMIN)
    ).status_code == 200
    record = await stored(redis_client, api_settings, "pipedrive")
    assert record["settings"]["inbound"]["password"] == sealed
    assert record["settings"]["inbound"]["interest_values"] == ["37", "41"]
    change = copy.deepcopy(body)
    change["inbound"]["password"] = INBOUND_PASSWORD_2
    assert (
        await client.put(f"{T}/connections/pipedrive", json=change, headers=TENANT_ADMIN)
    ).status_code == 200
    record = await stored(redis_client, api_settings, "pipedrive")
    assert opened(box, record)["inbound"]["password"] == INBOUND_PASSWORD_2


async def test_pipedrive_inbound_without_a_password_on_create_is_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await allow(client)
    inbound = {k: v for k, v in PIPEDRIVE_INBOUND.items() if k != "password"}
    refused = await client.put(
        f"{T}/connections/pipedrive",
        json={**PIPEDRIVE_BODY, "inbound": inbound},
        headers=TENANT_ADMIN,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [
        {"loc": ["body", "inbound", "password"], "msg": "Field required"}
    ]
    assert await redis_client.hget(connections_key(api_settings, TENANT), "pipedrive") is None


@pytest.mark.parametrize(
    "change",
    [
        {"password": "short"},
        {"password": REDACTED},
        {"password": SEALED_MARK + "abc"},
        {"username": "has:colon"},
        {"interest_field_key": "not a key"},
        {"interest_values": []},
        {"ip_allowlist": ["not-a-network"]},
        {"extra": True},
    ],
)
async def test_malformed_pipedrive_inbound_blocks_are_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, change: dict[str, Any]
) -> None:
    await allow(client)
    refused = await client.put(
        f"{T}/connections/pipedrive",
        json={**PIPEDRIVE_BODY, "inbound": {**PIPEDRIVE_INBOUND, **change}},
        headers=TENANT_ADMIN,
    )
    assert refused.status_code == 422
    assert await redis_client.hget(connections_key(api_settings, TENANT), "pipedrive") is None


async def test_webhook_inbound_is_sealed_redacted_and_kept(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    inbound = {"enabled": True, "secret": INBOUND_WHSEC}
    body = {**WEBHOOK_BODY, "inbound": inbound}
    created = await client.put(f"{T}/connections/webhook", json=body, headers=TENANT_ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["inbound"] == {
        "enabled": True,
        "secret": REDACTED,
        "ip_allowlist": [],
    }
    record = await stored(redis_client, api_settings, "webhook")
    sealed = record["settings"]["inbound"]["secret"]
    assert sealed.startswith(SEALED_MARK)
    block = WebhookInbound.model_validate(opened(box, record)["inbound"])
    assert block.secret.get_secret_value() == INBOUND_WHSEC

    keep = copy.deepcopy(body)
    del keep["inbound"]["secret"]
    assert (
        await client.put(f"{T}/connections/webhook", json=keep, headers=TENANT_ADMIN)
    ).status_code == 200
    assert (await stored(redis_client, api_settings, "webhook"))["settings"]["inbound"][
        "secret"
    ] == sealed


@pytest.mark.parametrize("secret", ["whsec_short", "not-whsec", REDACTED])
async def test_malformed_webhook_inbound_secrets_are_refused(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, secret: str
) -> None:
    await allow(client)
    refused = await client.put(
        f"{T}/connections/webhook",
        json={**WEBHOOK_BODY, "inbound": {"enabled": True, "secret": secret}},
        headers=TENANT_ADMIN,
    )
    assert refused.status_code == 422
    assert secret not in refused.text
    assert await redis_client.hget(connections_key(api_settings, TENANT), "webhook") is None


async def test_openapi_documents_the_inbound_blocks(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "inbound" in schemas["PipedriveConnectionIn"]["properties"]
    assert "inbound" in schemas["WebhookConnectionIn"]["properties"]
    assert schemas["PipedriveInboundIn"]["properties"]["password"]["writeOnly"] is True
    assert schemas["WebhookInboundIn"]["properties"]["secret"]["writeOnly"] is True
