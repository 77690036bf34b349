"""``tenant purge`` removes one tenant's Redis state and nothing of any other tenant's.

Two tenants, ``t_1`` and ``t_10`` (one's id a prefix of the other's), are given the same state
through the service's own code: allowlist and connections (sealed secrets) through the
connection service, an OAuth grant through the token store, identity links, a review entry
and a waiting person through the identity store, dedupe, version, hop, claim and connection
state through the delivery state repository, delivery records through their index. ``t_1``
also has identity links under a connection it deleted earlier that only its delivery records
still name. The key sets before and after are compared whole.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.oauth import OAuthGrant
from processors.auth.principal import Principal, Role
from processors.cli import main
from processors.deliveries.breaker import BreakerPolicy
from processors.deliveries.envelope import DeliveryItem
from processors.deliveries.models import DeliveryRecord, DeliveryStatus
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.state import ConnectionHealth, DeliveryStateRepository
from processors.identity.held import HeldRecord, HeldStore
from processors.identity.repository import IdentityLink, IdentityRepository, LinkState, ReviewEntry
from processors.oauthgrants import OAuthTokenStore, credentials_fingerprint
from processors.operations.purge import (
    FAMILIES,
    InvalidTenantError,
    TenantPurge,
    UnknownTenantError,
)
from processors.routing.idempotency import delivery_id_for, idempotency_key
from processors.settings import Settings, get_settings
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import connection_body
from processors.tenants.service import ConnectionService

ADMIN = Principal(sub="ops", roles=frozenset({Role.PLATFORM_ADMIN}))
WHSEC = "whsec_" + base64.b64encode(b"integration-tenant-purge-secret!").decode()
OAUTH = {
    "type": "oauth",
    "client_id": "qi-app",
    "client_secret": "qi-app-secret",
    "refresh_token": "rt-purge",
}


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("QI_REDIS_URL", settings.redis.url)
    monkeypatch.setenv("QI_REDIS_KEY_PREFIX", settings.redis.key_prefix)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _cli(*args: str) -> int:
    """The command, run as a shell would (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(main, list(args))


def _item(tenant: str, connection_id: str, entity_id: str, version: int) -> DeliveryItem:
    key = idempotency_key(
        tenant_id=tenant,
        connector="hubspot",
        connection_id=connection_id,
        event_type="company.upserted",
        entity_id=entity_id,
        entity_version=version,
    )
    return DeliveryItem(
        value=b"{}",
        headers={
            "qi.delivery_id": delivery_id_for(key),
            "qi.tenant_id": tenant,
            "qi.connection_id": connection_id,
            "qi.connector": "hubspot",
            "qi.idempotency_key": key,
            "qi.contract": "company",
            "qi.entity_id": entity_id,
            "qi.entity_version": str(version),
        },
        source_topic="exports",
        source_partition=0,
        source_offset=0,
    )


def _record(item: DeliveryItem, status: DeliveryStatus, attempt: int) -> DeliveryRecord:
    now = datetime.now(UTC)
    return DeliveryRecord(
        delivery_id=item.delivery_id,
        event_id=f"ev_{item.headers['qi.entity_id']}",
        correlation_id="corr",
        tenant_id=item.tenant_id,
        connection_id=item.connection_id,
        connector=item.connector,
        destination="default",
        event_type="company.upserted",
        idempotency_key=item.idempotency_key,
        entity_id=item.headers["qi.entity_id"],
        entity_version=item.entity_version,
        attempt=attempt,
        status=status,
        started_at=now,
        finished_at=now,
        duration_ms=1.0,
    )


async def _seed(redis: Redis, settings: Settings, tenant: str) -> None:
    """Everything the service keeps for a tenant, written by the service's own code."""
    prefix = settings.redis.key_prefix
    box = settings.secrets.secret_box()
    service = ConnectionService(ConnectionRepository(redis, key_prefix=prefix), box=box)
    await service.set_allowlisted(tenant, True, actor=ADMIN)
    webhook_body = connection_body("webhook").model_validate(
        {
            "delivery_mode": "webhook",
            "webhook": {"url": "https://hooks.example.com/q", "secret": WHSEC},
        }
    )
    await service.save_connection(tenant, Connector.WEBHOOK, webhook_body, actor=ADMIN)
    hubspot_body = connection_body("hubspot").model_validate(
        {
            "delivery_mode": "both",
            "auth": OAUTH,
            "webhook": {"url": "https://hooks.example.com/q", "secret": WHSEC},
        }
    )
    hubspot, _ = await service.save_connection(tenant, Connector.HUBSPOT, hubspot_body, actor=ADMIN)
    cid = hubspot.connection_id

    tokens = OAuthTokenStore(redis, box=box, key_prefix=prefix)
    grant = OAuthGrant(
        access_token=SecretStr("at"), refresh_token=SecretStr("rt-2"), expires_at=2e9
    )
    fingerprint = credentials_fingerprint(OAUTH)
    assert fingerprint is not None
    await tokens.save(grant, tenant_id=tenant, connection_id=cid, credentials=fingerprint)

    identity = IdentityRepository(redis, key_prefix=prefix)
    old_cid = f"conn_old_{tenant}"
    for connection_id in (cid, old_cid):
        await identity.put(
            IdentityLink(
                tenant_id=tenant,
                connection_id=connection_id,
                kind="company",
                queast_id="co_1",
                partner_object_id="hs_1",
                state=LinkState.AUTO_LINKED,
                strategy="domain",
                confidence=1.0,
            )
        )
    await identity.add_review(
        ReviewEntry(
            tenant_id=tenant,
            connection_id=cid,
            kind="company",
            queast_id="co_2",
            best_candidate_id="hs_2",
            confidence=0.6,
            strategy="company_name",
            explanation="two candidates",
        )
    )
    await identity.add_waiting(cid, "co_3", "pe_1")
    await identity.add_review(
        ReviewEntry(
            tenant_id=tenant,
            connection_id=cid,
            kind="company",
            queast_id="co_4",
            best_candidate_id="hs_4",
            confidence=0.5,
            strategy="company_name",
            explanation="rejected below",
        )
    )
    await identity.reject(cid, "company", "co_4")
    held = HeldStore(redis, key_prefix=prefix)
    await held.hold(
        HeldRecord(
            tenant_id=tenant,
            connector="hubspot",
            connection_id=cid,
            kind="company",
            queast_id="co_2",
            idempotency_key=f"qik_held_{tenant}",
            delivery_id=f"d_held_{tenant}",
            entity_version=1,
            topic="exports",
            partition=0,
            offset=1,
            first_held_at_ms=1,
            value_b64=base64.b64encode(b"contract with personal data").decode(),
            headers={"qi.tenant_id": tenant},
        )
    )

    state = DeliveryStateRepository(
        redis, key_prefix=prefix, dedupe_ttl_seconds=3600, hop_ttl_seconds=3600
    )
    delivered, retried, claimed = (_item(tenant, cid, f"co_{n}", n) for n in (1, 2, 3))
    old = _item(tenant, old_cid, "co_9", 1)
    await state.mark_delivered([delivered, old])
    await state.record_hops([(retried.delivery_id, 1)])
    await state.claim([claimed], owner="engine-1", lease_seconds=3600)
    await state.set_connection_state(cid, ConnectionHealth.NEEDS_REAUTH, reason="401", since=1.0)
    await state.set_connection_state(
        f"{cid}:webhook", ConnectionHealth.GONE, reason="410", since=1.0
    )
    await state.breaker_failed(
        cid,
        now=10.0,
        reason="503",
        probe=False,
        updated_at=1.0,
        policy=BreakerPolicy.from_settings(settings.delivery),
    )
    records = DeliveryRecordIndex(redis, key_prefix=prefix, retention_seconds=3600)
    await records.add_many(
        [
            _record(retried, DeliveryStatus.RETRY_SCHEDULED, 1),
            _record(retried, DeliveryStatus.DELIVERED, 2),
            _record(delivered, DeliveryStatus.DELIVERED, 1),
            _record(old, DeliveryStatus.DELIVERED, 1),
        ]
    )


async def _keys(redis: Redis, settings: Settings) -> dict[bytes, bytes | None]:
    """Every key of this test's prefix, with its serialized value."""
    found = [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}*", count=500)]
    return {key: await redis.dump(key) for key in found}


async def _members(redis: Redis, settings: Settings) -> set[str]:
    members = await redis.smembers(f"{settings.redis.key_prefix}allowlist")
    return {m.decode() if isinstance(m, bytes) else m for m in members}


@pytest.mark.usefixtures("cli_env")
async def test_purge_removes_every_key_of_t_1_and_none_of_t_10(
    redis: Redis, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(redis, settings, "t_10")
    only_t_10 = await _keys(redis, settings)
    await _seed(redis, settings, "t_1")
    both = await _keys(redis, settings)
    t_1_keys = set(both) - set(only_t_10)
    prefix = settings.redis.key_prefix
    families = {key.decode().removeprefix(prefix).split(":")[0] for key in t_1_keys}
    assert families == {
        "tenant", "oauth", "idmap", "idreview", "idwait", "ver", "connstate", "claim", "drec",
        "dlv", "hop", "idreject", "idheld", "breaker",
    }  # fmt: skip
    assert await _members(redis, settings) == {"t_1", "t_10"}

    # Dry run: the families and counts, nothing deleted.
    assert await _cli("tenant", "purge", "t_1", "--dry-run", "--json") == 0
    planned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert planned["dry_run"] is True
    assert planned["deleted"] == 0
    assert set(planned["families"]) == set(FAMILIES)
    assert sum(planned["families"].values()) == len(t_1_keys) + 1, "keys and the allowlist entry"
    assert await _keys(redis, settings) == both
    assert await _members(redis, settings) == {"t_1", "t_10"}

    # The purge: t_1's keys are gone, t_10's are all there with the same values.
    assert await _cli("tenant", "purge", "t_1", "--yes", "--json") == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done == {
        "tenant_id": "t_1",
        "deleted": len(t_1_keys) + 1,
        "families": planned["families"],
        "dry_run": False,
    }
    after = await _keys(redis, settings)
    allowlist = f"{settings.redis.key_prefix}allowlist".encode()
    assert set(after) == set(only_t_10)
    assert {k: v for k, v in after.items() if k != allowlist} == {
        k: v for k, v in only_t_10.items() if k != allowlist
    }
    assert await _members(redis, settings) == {"t_10"}

    # t_1 is unknown now: a second purge is refused and changes nothing.
    assert await _cli("tenant", "purge", "t_1", "--yes") == 2
    assert "no tenant 't_1'" in capsys.readouterr().err
    assert await _keys(redis, settings) == after


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("tenant_id", "message"),
    [
        ("", "empty"),
        ("t_*", "letters, digits"),
        ("t_1*", "letters, digits"),
        ("t_?", "letters, digits"),
        ("t_1:connections", "letters, digits"),
        ("t_[1]", "letters, digits"),
        ("t" * 65, "letters, digits"),
        ("t_2", "no tenant 't_2'"),
    ],
)
async def test_bad_or_unknown_tenant_ids_are_refused_and_nothing_changes(
    redis: Redis,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tenant_id: str,
    message: str,
) -> None:
    await _seed(redis, settings, "t_1")
    before = await _keys(redis, settings)
    for extra in (["--dry-run"], ["--yes", "--json"]):
        assert await _cli("tenant", "purge", tenant_id, *extra) == 2
        captured = capsys.readouterr()
        assert message in captured.err
        assert captured.out == ""
    assert await _keys(redis, settings) == before


@pytest.mark.usefixtures("cli_env")
async def test_without_yes_it_asks_and_a_no_or_no_terminal_deletes_nothing(
    redis: Redis,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _seed(redis, settings, "t_1")
    before = await _keys(redis, settings)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert await _cli("tenant", "purge", "t_1") == 2
    assert "--yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert await _cli("tenant", "purge", "t_1") == 1
    assert "nothing deleted" in capsys.readouterr().err
    assert await _keys(redis, settings) == before

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert await _cli("tenant", "purge", "t_1") == 0
    assert "removed" in capsys.readouterr().out
    assert set(await _keys(redis, settings)) == {
        f"{settings.redis.key_prefix}config:epoch".encode()
    }


async def test_the_service_refuses_before_it_reads(redis: Redis, settings: Settings) -> None:
    purge = TenantPurge(redis, key_prefix=settings.redis.key_prefix)
    with pytest.raises(InvalidTenantError):
        await purge.purge("t 1")
    with pytest.raises(UnknownTenantError):
        await purge.purge("t_1", dry_run=True)


@pytest.mark.usefixtures("cli_env")
async def test_a_forged_index_entry_does_not_reach_another_tenants_record(
    redis: Redis, settings: Settings
) -> None:
    """t_1's index naming one of t_10's records (a forged or corrupt entry) removes only the
    entry: the record says whose it is."""
    prefix = settings.redis.key_prefix
    await _seed(redis, settings, "t_10")
    only_t_10 = await _keys(redis, settings)
    await _seed(redis, settings, "t_1")
    records = sorted(k for k in only_t_10 if k.startswith(f"{prefix}drec:".encode()))
    foreign = records[0].decode().removeprefix(f"{prefix}drec:")
    await redis.zadd(f"{prefix}tenant:t_1:drec", {foreign: 1.0})
    assert await _cli("tenant", "purge", "t_1", "--yes") == 0
    after = await _keys(redis, settings)
    assert set(after) == set(only_t_10)
    assert (
        after[f"{prefix}drec:{foreign}".encode()] == only_t_10[f"{prefix}drec:{foreign}".encode()]
    )
