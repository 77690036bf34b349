"""The shared lease release script, against the real Redis: only the owner's token frees it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from processors.redis_client import RELEASE_IF_OWNER, reply_text
from processors.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Redis]:
    redis = Redis.from_url(settings.redis.url)
    yield redis
    keys = [key async for key in redis.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_only_the_owner_releases_its_lease(client: Redis, settings: Settings) -> None:
    release = client.register_script(RELEASE_IF_OWNER)
    key = f"{settings.redis.key_prefix}lease"
    await client.set(key, "owner-b", px=60_000)

    assert await release(keys=[key], args=["owner-a"]) == 0  # a lease another owner took over
    raw = await client.get(key)
    assert raw is not None
    assert reply_text(raw) == "owner-b"

    assert await release(keys=[key], args=["owner-b"]) == 1
    assert await client.exists(key) == 0
    assert await release(keys=[key], args=["owner-b"]) == 0  # gone: nothing to release


def test_reply_text_decodes_bytes_and_keeps_text() -> None:
    assert reply_text(b"caf\xc3\xa9") == "café"
    assert reply_text("plain") == "plain"
