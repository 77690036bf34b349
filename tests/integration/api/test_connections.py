"""Create, replace, read, list and delete connections; secrets sealed at rest; logs."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from processors.secrets import REDACTED, SecretBox
from processors.settings import Settings

from .conftest import (
    BODIES,
    HUBSPOT_BODY,
    HUBSPOT_CLIENT_SECRET,
    HUBSPOT_REFRESH_TOKEN,
    HUBSPOT_TOKEN,
    PIPEDRIVE_CLIENT_SECRET,
    PIPEDRIVE_REFRESH_TOKEN,
    PIPEDRIVE_TOKEN,
    PLATFORM,
    SEALED_MARK,
    TENANT,
    TENANT_ADMIN,
    WEBHOOK_BODY,
    WHSEC,
    WHSEC_2,
    connections_key,
)

T = f"/v1/tenants/{TENANT}"

HUBSPOT_OAUTH: dict[str, Any] = {
    "enabled": True,
    "delivery_mode": "both",
    "auth": {
        "type": "oauth",
        "client_id": "hubspot-client-id-1",
        "client_secret": HUBSPOT_CLIENT_SECRET,
        "refresh_token": HUBSPOT_REFRESH_TOKEN,
    },
    "webhook": {"url": "http://127.0.0.1:8901/hubspot-hook", "secret": WHSEC_2},
}
PIPEDRIVE_OAUTH: dict[str, Any] = {
    "delivery_mode": "api",
    "auth": {
        "type": "oauth",
        "client_id": "pipedrive-client-id-1",
        "client_secret": PIPEDRIVE_CLIENT_SECRET,
        "refresh_token": PIPEDRIVE_REFRESH_TOKEN,
        "api_domain": "https://acme.pipedrive.com",
    },
    "domain_field_key": "org_domain_key_1",
}


async def allow(client: httpx.AsyncClient, tenant: str = TENANT) -> None:
    assert (await client.put(f"/admin/v1/allowlist/{tenant}", headers=PLATFORM)).status_code == 204


async def stored(redis: Redis, settings: Settings, connector: str) -> dict[str, Any]:
    raw = await redis.hget(connections_key(settings, TENANT), connector)
    assert raw is not None
    document: dict[str, Any] = json.loads(raw)
    return document


def opens(box: SecretBox, record: dict[str, Any], path: str) -> str:
    node: Any = record["settings"]
    for part in path.split("."):
        node = node[part]
    assert isinstance(node, str)
    assert node.startswith(SEALED_MARK)
    return box.decrypt(
        node, tenant_id=record["tenant_id"], connection_id=record["connection_id"], purpose=path
    )


@pytest.mark.parametrize("connector", ["webhook", "hubspot", "pipedrive"])
async def test_create_get_list_delete(client: httpx.AsyncClient, connector: str) -> None:
    await allow(client)
    created = await client.put(
        f"{T}/connections/{connector}", json=BODIES[connector], headers=TENANT_ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    assert body["connector"] == connector
    assert body["tenant_id"] == TENANT
    assert body["connection_id"].startswith("conn_")
    assert body["enabled"] is True
    fetched = await client.get(f"{T}/connections/{connector}", headers=TENANT_ADMIN)
    assert fetched.status_code == 200
    assert fetched.json() == body
    listed = await client.get(f"{T}/connections", headers=TENANT_ADMIN)
    assert listed.json() == {"items": [body]}
    deleted = await client.delete(f"{T}/connections/{connector}", headers=TENANT_ADMIN)
    assert deleted.status_code == 204
    assert deleted.content == b""
    missing = await client.get(f"{T}/connections/{connector}", headers=TENANT_ADMIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "connection_not_found"
    again = await client.delete(f"{T}/connections/{connector}", headers=TENANT_ADMIN)
    assert again.status_code == 404
    assert (await client.get(f"{T}/connections", headers=TENANT_ADMIN)).json() == {"items": []}


async def test_webhook_response_shape(client: httpx.AsyncClient) -> None:
    await allow(client)
    response = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    body = response.json()
    assert set(body) == {
        "connection_id",
        "tenant_id",
        "connector",
        "enabled",
        "delivery_mode",
        "event_types",
        "export_non_strict_signals",
        "mapping_policy_version",
        "settings",
        "created_at",
        "updated_at",
        "state",
        "state_reason",
        "state_since",
    }
    assert body["delivery_mode"] == "webhook"
    assert body["event_types"] == {"company.upserted": True, "job_ad.published": False}
    assert body["settings"] == {
        "webhook": {"url": "http://127.0.0.1:8900/hook", "secret": REDACTED},
        "rate_limit_per_second": 20,
        "max_concurrency": 4,
    }


async def test_put_twice_replaces_and_keeps_identity(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    first = (
        await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    ).json()
    sealed_before = (await stored(redis_client, api_settings, "webhook"))["settings"]["webhook"][
        "secret"
    ]
    update = copy.deepcopy(WEBHOOK_BODY)
    del update["webhook"]["secret"]  # keep the stored secret
    update["enabled"] = False
    update["event_types"] = {"signal.emitted": False}
    replaced = await client.put(f"{T}/connections/webhook", json=update, headers=TENANT_ADMIN)
    assert replaced.status_code == 200
    second = replaced.json()
    assert second["connection_id"] == first["connection_id"]
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]
    assert second["enabled"] is False
    assert second["event_types"] == {"signal.emitted": False}
    record = await stored(redis_client, api_settings, "webhook")
    assert record["settings"]["webhook"]["secret"] == sealed_before
    assert opens(box, record, "webhook.secret") == WHSEC
    assert len(await redis_client.hkeys(connections_key(api_settings, TENANT))) == 1

    rotated = copy.deepcopy(WEBHOOK_BODY)
    rotated["webhook"]["secret"] = WHSEC_2
    third = await client.put(f"{T}/connections/webhook", json=rotated, headers=TENANT_ADMIN)
    assert third.status_code == 200
    assert third.json()["connection_id"] == first["connection_id"]
    assert opens(box, await stored(redis_client, api_settings, "webhook"), "webhook.secret") == (
        WHSEC_2
    )


async def test_one_connection_per_connector(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    await allow(client)
    for connector, body in BODIES.items():
        for _ in range(2):
            await client.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
    listed = (await client.get(f"{T}/connections", headers=TENANT_ADMIN)).json()["items"]
    assert [c["connector"] for c in listed] == ["hubspot", "pipedrive", "webhook"]
    assert len({c["connection_id"] for c in listed}) == 3
    fields = await redis_client.hkeys(connections_key(api_settings, TENANT))
    assert sorted(fields) == [b"hubspot", b"pipedrive", b"webhook"]


async def test_secrets_are_sealed_at_rest(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    for connector, body in (
        ("webhook", WEBHOOK_BODY),
        ("hubspot", HUBSPOT_OAUTH),
        ("pipedrive", PIPEDRIVE_OAUTH),
    ):
        assert (
            await client.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
        ).status_code == 201
    raw = await redis_client.hgetall(connections_key(api_settings, TENANT))
    for secret in (WHSEC, WHSEC_2, HUBSPOT_CLIENT_SECRET, PIPEDRIVE_REFRESH_TOKEN):
        assert all(secret.encode() not in value for value in raw.values())
    webhook = await stored(redis_client, api_settings, "webhook")
    assert opens(box, webhook, "webhook.secret") == WHSEC
    hubspot = await stored(redis_client, api_settings, "hubspot")
    assert opens(box, hubspot, "auth.client_secret") == HUBSPOT_CLIENT_SECRET
    assert opens(box, hubspot, "auth.refresh_token") == HUBSPOT_REFRESH_TOKEN
    assert opens(box, hubspot, "webhook.secret") == WHSEC_2
    assert hubspot["settings"]["auth"]["client_id"] == "hubspot-client-id-1"
    pipedrive = await stored(redis_client, api_settings, "pipedrive")
    assert opens(box, pipedrive, "auth.client_secret") == PIPEDRIVE_CLIENT_SECRET
    assert opens(box, pipedrive, "auth.refresh_token") == PIPEDRIVE_REFRESH_TOKEN
    assert pipedrive["settings"]["auth"]["api_domain"] == "https://acme.pipedrive.com"
    # bound to the connection: the same token does not open for another tenant
    token = webhook["settings"]["webhook"]["secret"]
    with pytest.raises(Exception, match="authentication failed"):
        box.decrypt(
            token, tenant_id="t_b", connection_id=webhook["connection_id"], purpose="webhook.secret"
        )


async def test_api_token_connectors_are_sealed(
    client: httpx.AsyncClient, redis_client: Redis, api_settings: Settings, box: SecretBox
) -> None:
    await allow(client)
    await client.put(f"{T}/connections/hubspot", json=HUBSPOT_BODY, headers=TENANT_ADMIN)
    await client.put(f"{T}/connections/pipedrive", json=BODIES["pipedrive"], headers=TENANT_ADMIN)
    assert opens(box, await stored(redis_client, api_settings, "hubspot"), "auth.token") == (
        HUBSPOT_TOKEN
    )
    assert opens(box, await stored(redis_client, api_settings, "pipedrive"), "auth.token") == (
        PIPEDRIVE_TOKEN
    )
    shown = (await client.get(f"{T}/connections/hubspot", headers=TENANT_ADMIN)).json()
    assert shown["settings"] == {"auth": {"type": "private_app", "token": REDACTED}}


async def test_hubspot_auth_kept_or_required_on_replace(client: httpx.AsyncClient) -> None:
    await allow(client)
    await client.put(f"{T}/connections/hubspot", json=HUBSPOT_OAUTH, headers=TENANT_ADMIN)
    keep = copy.deepcopy(HUBSPOT_OAUTH)
    del keep["auth"]["client_secret"]
    del keep["auth"]["refresh_token"]
    del keep["webhook"]["secret"]
    kept = await client.put(f"{T}/connections/hubspot", json=keep, headers=TENANT_ADMIN)
    assert kept.status_code == 200
    # switching the auth type: the old type's secrets are not carried over
    switch = {"delivery_mode": "api", "auth": {"type": "private_app"}}
    refused = await client.put(f"{T}/connections/hubspot", json=switch, headers=TENANT_ADMIN)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [
        {"loc": ["body", "auth", "token"], "msg": "Field required"}
    ]


async def test_secret_required_on_create(client: httpx.AsyncClient) -> None:
    await allow(client)
    body = copy.deepcopy(WEBHOOK_BODY)
    del body["webhook"]["secret"]
    response = await client.put(f"{T}/connections/webhook", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"loc": ["body", "webhook", "secret"], "msg": "Field required"}
    ]
    oauth = copy.deepcopy(PIPEDRIVE_OAUTH)
    del oauth["auth"]["refresh_token"]
    response = await client.put(f"{T}/connections/pipedrive", json=oauth, headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "auth", "refresh_token"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"delivery_mode": "api"}, ["body"]),
        ({"delivery_mode": "both", "auth": HUBSPOT_BODY["auth"]}, ["body"]),
        ({"delivery_mode": "webhook"}, ["body"]),
    ],
)
async def test_hubspot_blocks_required_by_delivery_mode(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    await allow(client)
    response = await client.put(f"{T}/connections/hubspot", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == loc


async def test_hubspot_webhook_only_needs_no_auth(client: httpx.AsyncClient) -> None:
    await allow(client)
    body = {"delivery_mode": "webhook", "webhook": WEBHOOK_BODY["webhook"]}
    response = await client.put(f"{T}/connections/hubspot", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 201
    assert response.json()["settings"] == {
        "webhook": {"url": "http://127.0.0.1:8900/hook", "secret": REDACTED}
    }


async def test_not_allowlisted_tenant(client: httpx.AsyncClient) -> None:
    refused = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_not_allowlisted"
    assert (await client.get(f"{T}/connections", headers=TENANT_ADMIN)).json() == {"items": []}
    # platform admins bootstrap and override
    created = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=PLATFORM)
    assert created.status_code == 201
    # the tenant admin can see and remove it, not change it
    assert (await client.get(f"{T}/connections/webhook", headers=TENANT_ADMIN)).status_code == 200
    again = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    assert again.status_code == 403
    await allow(client)
    allowed = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    assert allowed.status_code == 200
    removed = await client.delete(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    assert removed.status_code == 204
    status = await client.get(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    assert status.json() == {"tenant_id": TENANT, "allowlisted": False}
    assert (
        await client.delete(f"{T}/connections/webhook", headers=TENANT_ADMIN)
    ).status_code == 204


async def test_allowlist_is_idempotent(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (
            await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
        ).status_code == 204
    status = await client.get(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
    assert status.json() == {"tenant_id": TENANT, "allowlisted": True}
    for _ in range(2):
        response = await client.delete(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
        assert response.status_code == 204


async def test_logs_carry_ids_and_actor(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await allow(client)
    created = await client.put(f"{T}/connections/webhook", json=WEBHOOK_BODY, headers=TENANT_ADMIN)
    connection_id = created.json()["connection_id"]
    await client.delete(f"{T}/connections/webhook", headers=TENANT_ADMIN)
    events = {
        r.getMessage(): (r.levelno, vars(r))
        for r in caplog.records
        if r.name.startswith("processors.tenants")
    }
    _level, allowlist = events["allowlist.changed"]
    assert (allowlist["tenant_id"], allowlist["allowlisted"], allowlist["actor_sub"]) == (
        TENANT,
        True,
        "ops-1",
    )
    for name in ("connection.saved", "connection.deleted"):
        level, fields = events[name]
        assert level == logging.INFO
        assert fields["tenant_id"] == TENANT
        assert fields["connector"] == "webhook"
        assert fields["connection_id"] == connection_id
        assert fields["actor_sub"] == "user-1"


HUBSPOT_OPTIONS: dict[str, Any] = {
    "queast_id_property": "queast_company_id",
    "note_id_property": "queast_note_id",
    "tier": "professional_enterprise",
    "match_policy": {
        "company_strategies": ["domain", "linkedin_url", "company_name"],
        "person_strategies": ["email"],
        "auto_link_threshold": 0.96,
        "ambiguity_margin": 0.08,
    },
}
PIPEDRIVE_OPTIONS: dict[str, Any] = {
    "domain_field_key": "org_domain_key_2",
    "queast_id_field_key": "queast_id_key",
    "plan": "growth",
    "daily_budget": 20000,
    "match_policy": {"auto_link_threshold": 0.9},
}


@pytest.mark.parametrize(
    ("connector", "body", "options"),
    [
        ("hubspot", HUBSPOT_OAUTH, HUBSPOT_OPTIONS),
        ("pipedrive", BODIES["pipedrive"], PIPEDRIVE_OPTIONS),
    ],
)
async def test_partner_options_are_stored_and_shown_back(
    client: httpx.AsyncClient,
    redis_client: Redis,
    api_settings: Settings,
    connector: str,
    body: dict[str, Any],
    options: dict[str, Any],
) -> None:
    await allow(client)
    response = await client.put(
        f"{T}/connections/{connector}", json={**body, **options}, headers=TENANT_ADMIN
    )
    assert response.status_code == 201
    for shown in (
        response.json(),
        (await client.get(f"{T}/connections/{connector}", headers=TENANT_ADMIN)).json(),
    ):
        assert {k: shown["settings"][k] for k in options} == options
    record = await stored(redis_client, api_settings, connector)
    assert {k: record["settings"][k] for k in options} == options
    # a replace without them goes back to the connector's defaults
    replaced = await client.put(f"{T}/connections/{connector}", json=body, headers=TENANT_ADMIN)
    assert replaced.status_code == 200
    left = set(options) - {"domain_field_key"}
    assert not left & set(replaced.json()["settings"])


async def test_a_hubspot_connection_in_both_modes_keeps_its_webhook_and_options(
    client: httpx.AsyncClient,
) -> None:
    await allow(client)
    body = {**HUBSPOT_OAUTH, "tier": "oauth_app"}
    response = await client.put(f"{T}/connections/hubspot", json=body, headers=TENANT_ADMIN)
    assert response.status_code == 201
    shown = response.json()
    assert shown["delivery_mode"] == "both"
    assert shown["settings"]["webhook"] == {
        "url": "http://127.0.0.1:8901/hubspot-hook",
        "secret": REDACTED,
    }
    assert shown["settings"]["tier"] == "oauth_app"
