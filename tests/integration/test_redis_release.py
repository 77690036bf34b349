"""The shared Redis helpers against the real Redis: the lease release script (only the owner's
token frees it) and pipelines that run scripts as ``EVALSHA`` (one round trip, and a script
the server does not have is loaded and the whole pipeline run again)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from processors.redis_client import (
    RELEASE_IF_OWNER,
    ScriptPipeline,
    reply_text,
    run_script_pipeline,
)
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


async def test_a_script_pipeline_runs_in_order_and_loads_a_script_redis_does_not_have(
    client: Redis, settings: Settings
) -> None:
    # a script no server has seen (its text is unique), so the first EVALSHA meets NOSCRIPT;
    # it stays in the server's script cache (no key), as every script the service runs does
    source = f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    bump = client.register_script(source)
    assert await client.script_exists(bump.sha) == [False]
    counter, mark = f"{settings.redis.key_prefix}counter", f"{settings.redis.key_prefix}mark"

    def build(pipeline: ScriptPipeline) -> None:
        pipeline.pipe.set(mark, "1")
        pipeline.run(bump, [counter], [2])
        pipeline.pipe.get(counter)
        pipeline.run(bump, [counter], [3])

    replies = await run_script_pipeline(client, build)

    # the first run's scripts were refused (NOSCRIPT) and only its plain commands ran (the
    # SET, harmless twice); after the load the whole pipeline ran again
    assert replies == [True, 2, b"2", 5]
    assert await client.script_exists(bump.sha) == [True]
    assert await run_script_pipeline(client, build) == [True, 7, b"7", 10]


async def test_a_script_pipeline_passes_on_a_script_error(
    client: Redis, settings: Settings
) -> None:
    failing = client.register_script(f"-- {uuid.uuid4().hex}\nreturn redis.error_reply('nope')")
    await client.script_load(failing.script)

    def build(pipeline: ScriptPipeline) -> None:
        pipeline.run(failing, [f"{settings.redis.key_prefix}x"], [])

    with pytest.raises(ResponseError, match="nope"):
        await run_script_pipeline(client, build)
