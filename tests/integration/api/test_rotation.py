"""rotate_keys over the real Redis: k1 -> k2 for secrets and OAuth grants, tampered ones
reported and left alone."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.oauth import OAuthGrant
from processors.keyrotation import RotationFailure, rotate_keys
from processors.oauthgrants import OAuthTokenStore
from processors.secrets import EncryptedSecret, KeyRing, SecretBox, SecretsSettings
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import iter_secret_paths, open_settings

from .conftest import (
    HUBSPOT_CLIENT_SECRET,
    HUBSPOT_REFRESH_TOKEN,
    OTHER_TENANT,
    PIPEDRIVE_TOKEN,
    PLATFORM,
    TENANT,
    WEBHOOK_BODY,
    WHSEC,
    WHSEC_2,
    connections_key,
)

K1 = "k1:" + base64.b64encode(bytes(range(32))).decode()
K2 = "k2:" + base64.b64encode(bytes(range(100, 132))).decode()

HUBSPOT_OAUTH: dict[str, Any] = {
    "delivery_mode": "both",
    "auth": {
        "type": "oauth",
        "client_id": "hubspot-client-id-1",
        "client_secret": HUBSPOT_CLIENT_SECRET,
        "refresh_token": HUBSPOT_REFRESH_TOKEN,
    },
    "webhook": {"url": "http://127.0.0.1:8901/h", "secret": WHSEC_2},
}
PIPEDRIVE: dict[str, Any] = {
    "auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN},
    "domain_field_key": "org_domain_key_1",
}
PLAINTEXTS = {
    ("webhook", "webhook.secret"): WHSEC,
    ("hubspot", "auth.client_secret"): HUBSPOT_CLIENT_SECRET,
    ("hubspot", "auth.refresh_token"): HUBSPOT_REFRESH_TOKEN,
    ("hubspot", "webhook.secret"): WHSEC_2,
    ("pipedrive", "auth.token"): PIPEDRIVE_TOKEN,
}


def with_keys(settings: Settings, keys: str) -> Settings:
    return settings.model_copy(update={"secrets": SecretsSettings(keys=SecretStr(keys))})


async def load(redis: Redis, settings: Settings, tenant: str = TENANT) -> dict[str, Any]:
    raw = await redis.hgetall(connections_key(settings, tenant))
    return {
        field.decode() if isinstance(field, bytes) else field: json.loads(value)
        for field, value in raw.items()
    }


async def raw_record(redis: Redis, key: str, connector: str) -> dict[str, Any]:
    raw = await redis.hget(key, connector)
    assert raw is not None
    document: dict[str, Any] = json.loads(raw)
    return document


def token_at(record: dict[str, Any], path: str) -> str:
    node: Any = record["settings"]
    for part in path.split("."):
        node = node[part]
    assert isinstance(node, str)
    return node


@pytest.fixture
async def sealed_with_k1(client_for: Callable[[Settings], Any], api_settings: Settings) -> Settings:
    """Connections for two tenants saved through the API under ring ``k1``."""
    settings = with_keys(api_settings, K1)
    async with client_for(settings) as client:
        for tenant in (TENANT, OTHER_TENANT):
            base = f"/v1/tenants/{tenant}/connections"
            for connector, body in (
                ("webhook", WEBHOOK_BODY),
                ("hubspot", HUBSPOT_OAUTH),
                ("pipedrive", PIPEDRIVE),
            ):
                response = await client.put(f"{base}/{connector}", json=body, headers=PLATFORM)
                assert response.status_code == 201
    return settings


async def test_rotate_k1_to_k2(
    sealed_with_k1: Settings, redis_client: Redis, client_for: Callable[[Settings], Any]
) -> None:
    before = await load(redis_client, sealed_with_k1)
    for connector, path in PLAINTEXTS:
        assert EncryptedSecret.parse(token_at(before[connector], path)).key_id == "k1"

    rotating = SecretBox(KeyRing.from_env_value(f"{K1},{K2}"))
    report = await rotate_keys(
        redis_client, key_prefix=sealed_with_k1.redis.key_prefix, box=rotating
    )
    assert report.ok
    assert report.newest_key_id == "k2"
    assert report.connections_scanned == 6
    assert report.connections_updated == 6
    assert report.secrets_rewrapped == 2 * len(PLAINTEXTS)
    assert report.secrets_already_current == 0

    only_k2 = SecretBox(KeyRing.from_env_value(K2))
    for tenant in (TENANT, OTHER_TENANT):
        after = await load(redis_client, sealed_with_k1, tenant)
        for (connector, path), plaintext in PLAINTEXTS.items():
            record = after[connector]
            token = token_at(record, path)
            assert EncryptedSecret.parse(token).key_id == "k2"
            assert (
                only_k2.decrypt(
                    token,
                    tenant_id=tenant,
                    connection_id=record["connection_id"],
                    purpose=path,
                )
                == plaintext
            )
    # nothing else changed
    for connector, record in (await load(redis_client, sealed_with_k1)).items():
        old = before[connector]
        assert {k: v for k, v in record.items() if k != "settings"} == {
            k: v for k, v in old.items() if k != "settings"
        }

    again = await rotate_keys(
        redis_client, key_prefix=sealed_with_k1.redis.key_prefix, box=rotating
    )
    assert again.ok
    assert again.secrets_rewrapped == 0
    assert again.connections_updated == 0
    assert again.secrets_already_current == 2 * len(PLAINTEXTS)

    # the API keeps working on the rotated data with the new ring only
    async with client_for(with_keys(sealed_with_k1, K2)) as client:
        keep_secret = {**WEBHOOK_BODY, "webhook": {"url": WEBHOOK_BODY["webhook"]["url"]}}
        response = await client.put(
            f"/v1/tenants/{TENANT}/connections/webhook", json=keep_secret, headers=PLATFORM
        )
        assert response.status_code == 200


async def test_tampered_secret_is_reported_and_left_untouched(
    sealed_with_k1: Settings, redis_client: Redis
) -> None:
    key = connections_key(sealed_with_k1, TENANT)
    record = await raw_record(redis_client, key, "hubspot")
    good = record["settings"]["auth"]["refresh_token"]
    head, _, tail = good.rpartition(":")
    flipped = tail[:-3] + ("A" if tail[-3] != "A" else "B") + tail[-2:]
    tampered = f"{head}:{flipped}"
    record["settings"]["auth"]["refresh_token"] = tampered
    await redis_client.hset(key, "hubspot", json.dumps(record))
    # and a second one moved from another connection (binding mismatch)
    other = await raw_record(
        redis_client, connections_key(sealed_with_k1, OTHER_TENANT), "pipedrive"
    )
    moved = await raw_record(redis_client, key, "pipedrive")
    moved["settings"]["auth"]["token"] = other["settings"]["auth"]["token"]
    await redis_client.hset(key, "pipedrive", json.dumps(moved))

    box = SecretBox(KeyRing.from_env_value(f"{K1},{K2}"))
    report = await rotate_keys(redis_client, key_prefix=sealed_with_k1.redis.key_prefix, box=box)
    assert not report.ok
    failures = sorted(report.failures, key=lambda f: f.connector)
    assert [(f.tenant_id, f.connector, f.path) for f in failures] == [
        (TENANT, "hubspot", "auth.refresh_token"),
        (TENANT, "pipedrive", "auth.token"),
    ]
    assert all(
        isinstance(f, RotationFailure) and "authentication failed" in f.reason for f in failures
    )
    for failure in failures:
        assert tampered not in failure.reason
    assert report.secrets_rewrapped == 2 * len(PLAINTEXTS) - 2

    after = await raw_record(redis_client, key, "hubspot")
    assert after["settings"]["auth"]["refresh_token"] == tampered
    assert EncryptedSecret.parse(after["settings"]["auth"]["client_secret"]).key_id == "k2"
    assert EncryptedSecret.parse(after["settings"]["webhook"]["secret"]).key_id == "k2"


async def test_unknown_key_and_plaintext_and_bad_record(
    api_settings: Settings, redis_client: Redis
) -> None:
    prefix = api_settings.redis.key_prefix
    repository = ConnectionRepository(redis_client, key_prefix=prefix)
    retired = SecretBox(
        KeyRing.from_env_value("k0:" + base64.b64encode(bytes(range(50, 82))).decode())
    )
    box = SecretBox(KeyRing.from_env_value(f"{K1},{K2}"))
    record = ConnectionRecord(tenant_id=TENANT, connector=Connector.WEBHOOK)
    old_token = retired.encrypt(
        WHSEC, tenant_id=TENANT, connection_id=record.connection_id, purpose="webhook.secret"
    )
    await repository.put(
        record.model_copy(
            update={"settings": {"webhook": {"url": "https://x.example", "secret": old_token}}}
        )
    )
    plain = ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector.PIPEDRIVE,
        settings={"auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN}},
    )
    await repository.put(plain)
    await redis_client.hset(connections_key(api_settings, TENANT), "hubspot", b"{not json")

    report = await rotate_keys(redis_client, key_prefix=prefix, box=box)
    reasons = {(f.connector, f.path): f.reason for f in report.failures}
    assert reasons == {
        ("webhook", "webhook.secret"): "unknown key id k0",
        ("hubspot", ""): "stored connection record is not valid",
    }
    assert report.secrets_sealed_from_plaintext == 1
    stored = await repository.get(TENANT, Connector.PIPEDRIVE)
    assert stored is not None
    ((path, token),) = list(iter_secret_paths(stored.settings))
    assert path == "auth.token"
    assert EncryptedSecret.parse(token).key_id == "k2"
    assert open_settings(
        stored.settings, box=box, tenant_id=TENANT, connection_id=plain.connection_id
    ) == {"auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN}}
    untouched = await repository.get(TENANT, Connector.WEBHOOK)
    assert untouched is not None
    assert untouched.settings["webhook"]["secret"] == old_token


async def test_nothing_to_rotate(api_settings: Settings, redis_client: Redis) -> None:
    report = await rotate_keys(
        redis_client,
        key_prefix=api_settings.redis.key_prefix,
        box=api_settings.secrets.secret_box(),
    )
    assert report.ok
    assert report.connections_scanned == 0


async def test_rotation_does_not_overwrite_a_concurrent_save(
    sealed_with_k1: Settings, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection saved between the read and the write is read again, not clobbered."""
    import processors.keyrotation as rotation  # noqa: PLC0415

    key = connections_key(sealed_with_k1, TENANT)
    original = rotation._rewrap_connection
    raced = False

    def racing(record: ConnectionRecord, box: SecretBox) -> Any:
        nonlocal raced
        outcome = original(record, box)
        if record.connector is Connector.WEBHOOK and not raced:
            raced = True
            concurrent = record.model_copy(update={"enabled": False})
            # a save through the API lands here (sync client: the coroutine is not awaited yet)
            import redis as sync_redis  # noqa: PLC0415

            sync = sync_redis.Redis.from_url(sealed_with_k1.redis.url)
            sync.hset(key, "webhook", concurrent.model_dump_json())
            sync.close()
        return outcome

    monkeypatch.setattr(rotation, "_rewrap_connection", racing)
    box = SecretBox(KeyRing.from_env_value(f"{K1},{K2}"))
    report = await rotate_keys(redis_client, key_prefix=sealed_with_k1.redis.key_prefix, box=box)
    assert report.ok
    assert raced
    final = await raw_record(redis_client, key, "webhook")
    assert final["enabled"] is False  # the concurrent save survived
    assert EncryptedSecret.parse(final["settings"]["webhook"]["secret"]).key_id == "k2"


async def test_kept_secret_under_a_dropped_key_must_be_sent_again(
    sealed_with_k1: Settings, client_for: Callable[[Settings], Any]
) -> None:
    """Dropping k1 before rotating: a replace that keeps the secret gets 409, not a 500."""
    path = f"/v1/tenants/{TENANT}/connections/webhook"
    async with client_for(with_keys(sealed_with_k1, K2)) as client:
        keep_secret = {**WEBHOOK_BODY, "webhook": {"url": WEBHOOK_BODY["webhook"]["url"]}}
        refused = await client.put(path, json=keep_secret, headers=PLATFORM)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "stored_secret_unreadable"
        assert (await client.put(path, json=WEBHOOK_BODY, headers=PLATFORM)).status_code == 200


GRANT = OAuthGrant(
    access_token=SecretStr("hubspot-renewed-access-token-91ce"),
    refresh_token=SecretStr(HUBSPOT_REFRESH_TOKEN),
    expires_at=2_000_000_000.0,
)


async def test_rotation_reseals_stored_oauth_grants(
    sealed_with_k1: Settings, redis_client: Redis
) -> None:
    """``oauth:{connection_id}`` grants move to the active key with their expiry kept."""
    prefix = sealed_with_k1.redis.key_prefix
    repository = ConnectionRepository(redis_client, key_prefix=prefix)
    under_k1 = OAuthTokenStore(
        redis_client, box=SecretBox(KeyRing.from_env_value(K1)), key_prefix=prefix
    )
    connections = {}
    for tenant in (TENANT, OTHER_TENANT):
        record = await repository.get(tenant, Connector.HUBSPOT)
        assert record is not None
        connections[tenant] = record.connection_id
        await under_k1.save(
            GRANT, tenant_id=tenant, connection_id=record.connection_id, credentials="fp-1"
        )
    # a grant under a key no longer in the ring is reported and left as it is
    retired = OAuthTokenStore(
        redis_client,
        box=SecretBox(
            KeyRing.from_env_value("k0:" + base64.b64encode(bytes(range(50, 82))).decode())
        ),
        key_prefix=prefix,
    )
    pipedrive = await repository.get(TENANT, Connector.PIPEDRIVE)
    assert pipedrive is not None
    await retired.save(
        GRANT, tenant_id=TENANT, connection_id=pipedrive.connection_id, credentials="x"
    )
    unreadable = await redis_client.get(f"{prefix}oauth:{pipedrive.connection_id}")
    # and one whose connection is gone: counted, left alone
    await under_k1.save(GRANT, tenant_id=TENANT, connection_id="conn_deleted", credentials="x")
    orphan = await redis_client.get(f"{prefix}oauth:conn_deleted")
    ttls = {cid: await redis_client.ttl(f"{prefix}oauth:{cid}") for cid in connections.values()}

    rotating = SecretBox(KeyRing.from_env_value(f"{K1},{K2}"))
    report = await rotate_keys(redis_client, key_prefix=prefix, box=rotating)

    assert report.grants_rewrapped == 2
    assert report.grants_without_connection == 1
    assert await redis_client.get(f"{prefix}oauth:conn_deleted") == orphan
    assert [(f.tenant_id, f.connector, f.path) for f in report.failures] == [
        (TENANT, "pipedrive", "oauth_grant")
    ]
    assert report.failures[0].reason == "unknown key id k0"
    assert await redis_client.get(f"{prefix}oauth:{pipedrive.connection_id}") == unreadable
    only_k2 = OAuthTokenStore(
        redis_client, box=SecretBox(KeyRing.from_env_value(K2)), key_prefix=prefix
    )
    for tenant, connection_id in connections.items():
        key = f"{prefix}oauth:{connection_id}"
        raw = await redis_client.get(key)
        assert raw is not None
        stored = json.loads(raw)
        assert EncryptedSecret.parse(stored["grant"]).key_id == "k2"
        assert 0 < await redis_client.ttl(key) <= ttls[connection_id]
        loaded = await only_k2.load(
            tenant_id=tenant, connection_id=connection_id, credentials="fp-1"
        )
        assert loaded == GRANT

    again = await rotate_keys(redis_client, key_prefix=prefix, box=rotating)
    assert again.grants_rewrapped == 0
    assert again.grants_already_current == 2
