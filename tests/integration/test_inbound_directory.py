"""The per-tenant company directory and the review queue against the real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from processors.inbound.directory import (
    MAX_TOKEN_FANOUT,
    CompanyDirectory,
    DirectoryUpdate,
    directory_update,
)
from processors.inbound.reviews import BookmarkMarks
from processors.operations.purge import TenantPurge
from processors.settings import Settings

TENANT = "t_dir"


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def directory(redis: Redis, settings: Settings) -> CompanyDirectory:
    return CompanyDirectory(redis, key_prefix=settings.redis.key_prefix)


def _update(event_type: str, data: dict[str, Any], tenant_id: str = TENANT) -> DirectoryUpdate:
    value = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "schema_version": "1.0",
            "tenant_id": tenant_id,
            "occurred_at": "2026-12-01T09:00:00Z",
            "data": data,
        }
    ).encode()
    update = directory_update(value)
    assert update is not None
    return update


def _upsert(company_id: str, version: int, **fields: Any) -> DirectoryUpdate:
    return _update("company.upserted", {"company_id": company_id, "version": version, **fields})


async def test_an_upsert_is_indexed_by_domain_linkedin_and_name(
    directory: CompanyDirectory,
) -> None:
    assert await directory.apply(
        _upsert(
            "co_1",
            1,
            name="Acme Robotics AB",
            domain="www.acme.se",
            linkedin_url="https://www.linkedin.com/company/acme-robotics",
        )
    )
    assert await directory.by_domain(TENANT, "acme.se") == ["co_1"]
    assert await directory.by_linkedin(TENANT, "linkedin.com/company/acme-robotics") == ["co_1"]
    entry = await directory.get(TENANT, "co_1")
    assert entry is not None
    assert entry.normalized_name is not None
    assert await directory.by_name(TENANT, entry.normalized_name) == ["co_1"]
    # another tenant's directory is another one
    assert await directory.by_domain("t_other", "acme.se") == []


async def test_an_older_version_is_ignored_and_a_newer_one_moves_the_indexes(
    directory: CompanyDirectory,
) -> None:
    assert await directory.apply(_upsert("co_1", 5, name="Acme", domain="acme.se"))
    assert not await directory.apply(_upsert("co_1", 4, name="Older", domain="older.se"))
    assert not await directory.apply(_upsert("co_1", 5, name="Same", domain="same.se"))
    assert await directory.by_domain(TENANT, "older.se") == []
    assert await directory.apply(_upsert("co_1", 6, name="Acme", domain="acme.de"))
    assert await directory.by_domain(TENANT, "acme.se") == []
    assert await directory.by_domain(TENANT, "acme.de") == ["co_1"]


async def test_a_deletion_removes_the_company_and_an_older_upsert_cannot_bring_it_back(
    directory: CompanyDirectory,
) -> None:
    await directory.apply(_upsert("co_1", 2, name="Acme", domain="acme.se"))
    await directory.apply(_upsert("co_2", 1, name="Acme", domain="acme.se"))
    assert await directory.apply(_update("company.deleted", {"company_id": "co_1", "version": 3}))
    assert await directory.get(TENANT, "co_1") is None
    assert await directory.by_domain(TENANT, "acme.se") == ["co_2"]
    assert await directory.by_name(TENANT, "acme") == ["co_2"]
    assert not await directory.apply(_upsert("co_1", 2, name="Acme", domain="acme.se"))
    assert await directory.by_domain(TENANT, "acme.se") == ["co_2"]
    assert [e.company_id for e in await directory.entries(TENANT, ["co_1", "co_2"])] == ["co_2"]


async def test_a_word_shared_by_too_many_companies_finds_no_candidates(
    directory: CompanyDirectory, redis: Redis, settings: Settings
) -> None:
    await directory.apply(_upsert("co_rare", 1, name="Zyxel Holdings"))
    many = [f"co_{n}" for n in range(MAX_TOKEN_FANOUT + 1)]
    for index in ("token:holdings", "prefix:hol"):
        await redis.sadd(f"{settings.redis.key_prefix}tenant:{TENANT}:indir:{index}", *many)
    found = await directory.by_name(TENANT, "quorvex holdings")
    assert found == []
    assert await directory.by_name(TENANT, "zyxel holdings") == ["co_rare"]


async def test_a_misspelt_name_still_finds_its_company(directory: CompanyDirectory) -> None:
    await directory.apply(_upsert("co_siemens", 1, name="Siemens"))
    await directory.apply(_upsert("co_other", 1, name="Deloitte"))
    assert await directory.by_name(TENANT, "siemans") == ["co_siemens"]


async def test_tenant_purge_removes_the_inbound_keys(
    directory: CompanyDirectory, redis: Redis, settings: Settings
) -> None:
    prefix = settings.redis.key_prefix
    await directory.apply(_upsert("co_1", 1, name="Acme", domain="acme.se"))
    await BookmarkMarks(redis, key_prefix=prefix).mark(TENANT, "bm_" + "1" * 32)
    await TenantPurge(redis, key_prefix=prefix).purge(TENANT)
    left = [key async for key in redis.scan_iter(match=f"{prefix}tenant:{TENANT}:*")]
    assert left == []
    assert await directory.by_domain(TENANT, "acme.se") == []


async def _snapshot(redis: Redis, prefix: str) -> dict[str, object]:
    """Every key under ``prefix`` (named without it) with its value: hashes and sets."""
    found: dict[str, object] = {}
    async for key in redis.scan_iter(match=f"{prefix}*"):
        name = key.decode()[len(prefix) :]
        if await redis.type(key) == b"hash":
            found[name] = await redis.hgetall(key)
        else:
            found[name] = await redis.smembers(key)
    return found


async def test_a_batch_leaves_what_applying_its_updates_one_by_one_leaves(
    redis: Redis, settings: Settings
) -> None:
    """Versions out of order, a rename, a deletion, an older upsert after it, two tenants,
    and an entry stored before the batch: ``apply_many`` ends where ``apply`` in turn does."""
    before = [_upsert("co_1", 1, name="Acme", domain="acme.se")]
    batch = [
        _upsert("co_1", 3, name="Acme Robotics", domain="acme.de"),
        _upsert("co_1", 2, name="Acme Old", domain="old.se"),
        _upsert("co_2", 1, name="Beta", domain="beta.se"),
        _update("company.deleted", {"company_id": "co_2", "version": 2}),
        _upsert("co_2", 1, name="Beta again", domain="beta.se"),
        _update("company.upserted", {"company_id": "co_1", "version": 1, "name": "Other"}, "t_b"),
        _upsert("co_3", 4, name="Gamma", linkedin_url="https://www.linkedin.com/company/gamma"),
        _upsert("co_3", 4, name="Gamma twin"),
    ]
    one_by_one = CompanyDirectory(redis, key_prefix=f"{settings.redis.key_prefix}seq:")
    at_once = CompanyDirectory(redis, key_prefix=f"{settings.redis.key_prefix}batch:")
    for update in before:
        assert await one_by_one.apply(update)
        assert await at_once.apply(update)
    applied = [await one_by_one.apply(update) for update in batch]

    assert await at_once.apply_many(batch) == len(
        {(u.tenant_id, u.entry.company_id) for u in batch}
    )
    assert sum(applied) > len({(u.tenant_id, u.entry.company_id) for u in batch})
    sequential = await _snapshot(redis, f"{settings.redis.key_prefix}seq:")
    assert sequential, "the one-by-one directory holds entries and indexes"
    assert await _snapshot(redis, f"{settings.redis.key_prefix}batch:") == sequential
    assert await at_once.apply_many(batch) == 0, "applied again, nothing is newer"
    assert await at_once.apply_many([]) == 0
