"""Integration fixtures: the real Kafka and Redis, and per-test topics and keys.

Each test gets its own topic prefix, Redis key prefix and consumer group, so tests never see
each other's records and can run against a shared broker. After each test,
:func:`leaves_nothing_behind` deletes its topics, keys and consumer group (whoever created them:
a fixture, a worker, the API) and fails the test if any topic or key is still there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from processors.kafka import ensure_topics
from processors.settings import (
    KafkaSettings,
    MetricsSettings,
    RedisSettings,
    RoutingSettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.pipedrive import PipedriveSandbox
from tests.support.hygiene import remove_prefix
from tests.support.infrastructure import Infrastructure, infrastructure
from tests.support.worker import WorkerProcess, free_port

PARTITIONS = 4


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    with infrastructure() as resolved:
        yield resolved


@pytest.fixture
def test_id() -> str:
    return f"it{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def leaves_nothing_behind(infra: Infrastructure, test_id: str) -> Iterator[None]:
    """At teardown (after the workers stopped): delete the test's prefix, check it is empty.

    Autouse fixtures are set up first, so this one is torn down last.
    """
    yield
    left = remove_prefix(
        bootstrap_servers=infra.bootstrap_servers,
        redis_url=infra.redis_url,
        topic_prefix=f"{test_id}.",
        key_prefix=f"{test_id}:",
        group_prefix=test_id,
    )
    assert not left.topics, f"topics left behind: {left.topics[:5]}"
    assert not left.keys, f"Redis keys left behind: {left.keys[:5]}"


@pytest.fixture
def qi_env(infra: Infrastructure, test_id: str, tmp_path: Path) -> dict[str, str]:
    """The environment of this test's worker processes."""
    return {
        "QI_ENV": "development",
        "QI_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "QI_REDIS_URL": infra.redis_url,
        "QI_REDIS_KEY_PREFIX": f"{test_id}:",
        "QI_TOPIC_PREFIX": f"{test_id}.",
        "QI_TOPIC_PARTITIONS": str(PARTITIONS),
        "QI_WORKER_APP_ID": test_id,
        "QI_WORKER_DATADIR": str(tmp_path / "faust-data"),  # never the working directory
        "QI_METRICS_PORT": str(free_port()),
        "QI_ROUTING_MAX_EVENT_BYTES": str(64 * 1024),
        # Faust reads these itself: a SIGKILLed worker's partitions go to the next member
        # after 10 s instead of 60 s (a test changes nothing else by it).
        "BROKER_SESSION_TIMEOUT": "10",
        "BROKER_HEARTBEAT_INTERVAL": "1",
    }


@pytest.fixture
def settings(infra: Infrastructure, test_id: str, qi_env: dict[str, str]) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers),
        redis=RedisSettings(url=infra.redis_url, key_prefix=f"{test_id}:"),
        topics=TopicSettings(prefix=f"{test_id}.", partitions=PARTITIONS),
        routing=RoutingSettings(max_event_bytes=64 * 1024),
        worker=WorkerSettings(app_id=test_id),
        metrics=MetricsSettings(port=int(qi_env["QI_METRICS_PORT"])),
    )


@pytest.fixture
def topics(settings: Settings) -> TopicMap:
    topic_map = TopicMap(settings.topics.prefix)
    ensure_topics(settings.kafka, settings.topics, topic_map.all_specs())
    return topic_map


@pytest.fixture
async def repository(settings: Settings) -> AsyncIterator[ConnectionRepository]:
    client = Redis.from_url(settings.redis.url)
    yield ConnectionRepository(client, key_prefix=settings.redis.key_prefix)
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def worker_factory(qi_env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers started by a test; all stopped at its end. Append with ``start_worker``."""
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture
def hubspot() -> Iterator[HubSpotSandbox]:
    """A HubSpot sandbox for this test; add portals to it."""
    with HubSpotSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def pipedrive() -> Iterator[PipedriveSandbox]:
    """A Pipedrive sandbox for this test; add accounts to it."""
    with PipedriveSandbox() as sandbox:
        yield sandbox


def start_worker(workers: list[WorkerProcess], env: dict[str, str], log_dir: Path) -> WorkerProcess:
    worker = WorkerProcess(env, log_dir / f"worker-{len(workers)}.log").start()
    workers.append(worker)
    return worker
