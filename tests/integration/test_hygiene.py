"""Tests clean up: the topics, keys and groups of a test are gone once it ends."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from redis.asyncio import Redis

from processors.settings import Settings
from processors.topics import TopicMap
from tests.support.hygiene import remove_prefix
from tests.support.infrastructure import Infrastructure

_PREVIOUS: list[str] = []
"""The id of the first test below, for the second to inspect after its teardown."""


def _topics(infra: Infrastructure, prefix: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": infra.bootstrap_servers})
    return [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]


async def _keys(infra: Infrastructure, prefix: str) -> list[bytes]:
    client = Redis.from_url(infra.redis_url)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}*")]
    finally:
        await client.aclose()


async def test_remove_prefix_deletes_the_topics_and_keys_under_it(
    infra: Infrastructure, settings: Settings, topics: TopicMap, test_id: str
) -> None:
    client = Redis.from_url(infra.redis_url)
    await client.set(f"{test_id}:dlv:qik_1", "1")
    await client.hset(f"{test_id}:ver:conn_1", "company:co_1", 3)
    await client.aclose()
    assert topics.domain_events in _topics(infra, f"{test_id}.")

    left = remove_prefix(
        bootstrap_servers=infra.bootstrap_servers,
        redis_url=infra.redis_url,
        topic_prefix=settings.topics.prefix,
        key_prefix=settings.redis.key_prefix,
        group_prefix=test_id,
    )

    assert not left
    assert _topics(infra, f"{test_id}.") == []
    assert await _keys(infra, f"{test_id}:") == []


async def test_a_test_that_creates_topics_and_keys(
    infra: Infrastructure, topics: TopicMap, test_id: str
) -> None:
    """Leaves its topics and a key for the fixtures to remove; the next test checks."""
    client = Redis.from_url(infra.redis_url)
    await client.set(f"{test_id}:hop:d-1", "1")
    await client.aclose()
    assert _topics(infra, f"{test_id}.")
    _PREVIOUS.append(test_id)


async def test_the_previous_test_left_no_topic_and_no_key(infra: Infrastructure) -> None:
    (previous,) = _PREVIOUS
    assert _topics(infra, f"{previous}.") == []
    assert await _keys(infra, f"{previous}:") == []
