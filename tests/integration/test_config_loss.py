"""A Redis that comes back without its configuration: the router holds, loudly, and loses nothing.

The loss is simulated by deleting every key under this test's prefix (the configuration epoch
included) while the real worker runs; the shared Redis is never flushed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from processors.cli import main
from processors.settings import Settings, get_settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConfigurationLostError, ConnectionRepository
from processors.tenants.seed import initialise_configuration, seed_from_file
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

TENANT = "t_cfg"
CONNECTION = ConnectionRecord.model_validate(
    {"tenant_id": TENANT, "connector": "hubspot", "connection_id": "conn_cfg_hubspot"}
)


def _companies(first: int, count: int) -> list[tuple[bytes, bytes]]:
    """``company.upserted`` events, one export each to the tenant's HubSpot connection."""
    return [
        (
            TENANT.encode(),
            json.dumps(
                {
                    "event_id": uuid.uuid4().hex,
                    "event_type": "company.upserted",
                    "schema_version": "1.0",
                    "tenant_id": TENANT,
                    "occurred_at": "2026-11-26T05:00:00Z",
                    "data": {"company_id": f"co_{n}", "name": f"Company {n}", "version": 1},
                }
            ).encode(),
        )
        for n in range(first, first + count)
    ]


def _entities(records: Sequence[ConsumedRecord]) -> list[str]:
    return sorted(r.header("qi.entity_id") for r in records)


async def _restore(repository: ConnectionRepository) -> None:
    await repository.allow(TENANT)
    await repository.put(CONNECTION)


async def _metric(qi_env: dict[str, str], name: str) -> float | None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{qi_env['QI_METRICS_PORT']}/metrics")
    for line in response.text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


async def test_routing_holds_while_the_configuration_is_lost_and_resumes_when_restored(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await _restore(repository)
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.exports("hubspot")], PARTITIONS)
    worker = start_worker(worker_factory, qi_env, tmp_path)
    produce(settings.kafka.bootstrap_servers, topics.domain_events, _companies(0, 20))
    reader.wait_until(lambda rs: len(rs) >= 20, timeout=120)
    assert _entities(reader.records) == sorted(f"co_{n}" for n in range(20))
    assert await _metric(qi_env, "qi_config_lost") == 0.0

    client = Redis.from_url(settings.redis.url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
        await client.delete(*keys)
    finally:
        await client.aclose()

    produce(settings.kafka.bootstrap_servers, topics.domain_events, _companies(100, 20))
    for _ in range(120):
        if await _metric(qi_env, "qi_config_lost") == 1.0:
            break
        await asyncio.sleep(0.5)
    assert await _metric(qi_env, "qi_config_lost") == 1.0
    reader.poll_for(3.0)
    assert len(reader.records) == 20, "nothing is routed without configuration"
    assert "routing.config.lost" in worker.log_path.read_text()
    assert worker.running

    await _restore(repository)
    records = reader.wait_until(lambda rs: len(rs) >= 40, timeout=120, settle=2.0)
    reader.close()
    expected = sorted([f"co_{n}" for n in range(20)] + [f"co_{n}" for n in range(100, 120)])
    assert _entities(records) == expected, "the events held during the loss are routed, once"
    assert await _metric(qi_env, "qi_config_lost") == 0.0
    assert worker.running


async def test_the_epoch_is_written_with_configuration_and_by_initialise(
    settings: Settings, repository: ConnectionRepository
) -> None:
    assert await repository.epoch() is None
    epoch = await repository.initialise()
    assert await repository.epoch() == epoch
    await repository.allow(TENANT)
    await repository.put(CONNECTION)
    assert await repository.epoch() == epoch, "the epoch names the first write and stays"
    routing = await repository.routing_for([TENANT])
    assert routing[TENANT].allowlisted
    assert [c.connection_id for c in routing[TENANT].connections] == [CONNECTION.connection_id]


async def test_without_an_epoch_routing_and_the_delivery_lookup_raise_a_redis_error(
    settings: Settings, repository: ConnectionRepository
) -> None:
    await repository.allow(TENANT)
    await repository.put(CONNECTION)
    client = Redis.from_url(settings.redis.url)
    try:
        await client.delete(f"{settings.redis.key_prefix}config:epoch")
        delivery = ConnectionRepository(
            client, key_prefix=settings.redis.key_prefix, detect_config_loss=True
        )
        with pytest.raises(ConfigurationLostError) as lost:
            await repository.routing_for([TENANT])
        assert isinstance(lost.value, RedisError), "retried like any Redis outage"
        assert await delivery.get(TENANT, Connector.HUBSPOT) is not None, "present: served"
        with pytest.raises(ConfigurationLostError):
            await delivery.get(TENANT, Connector.WEBHOOK)
        assert await repository.get(TENANT, Connector.WEBHOOK) is None, "the API is not held"
    finally:
        await client.aclose()


async def test_a_seed_file_even_an_empty_one_writes_the_epoch(
    settings: Settings, repository: ConnectionRepository, tmp_path: Path
) -> None:
    path = tmp_path / "seed.json"
    path.write_text("{}")
    await seed_from_file(path, settings=settings)
    assert await repository.epoch() is not None
    routing = await repository.routing_for([TENANT])  # no ConfigurationLostError
    assert not routing[TENANT].allowlisted


async def test_the_loss_is_logged_once_per_interval_not_once_per_batch(
    settings: Settings, repository: ConnectionRepository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="processors.tenants.repository")
    for _ in range(5):
        with pytest.raises(ConfigurationLostError):
            await repository.routing_for([TENANT])
    lost = [r for r in caplog.records if r.getMessage() == "routing.config.lost"]
    assert len(lost) == 1
    assert lost[0].levelno == logging.ERROR
    assert REGISTRY.get_sample_value("qi_config_lost") == 1.0
    await initialise_configuration(settings=settings)
    await repository.routing_for([TENANT])
    assert REGISTRY.get_sample_value("qi_config_lost") == 0.0


def test_connections_init_writes_the_epoch_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QI_REDIS_URL", settings.redis.url)
    monkeypatch.setenv("QI_REDIS_KEY_PREFIX", settings.redis.key_prefix)
    key = f"{settings.redis.key_prefix}config:epoch"
    get_settings.cache_clear()
    client = SyncRedis.from_url(settings.redis.url)
    try:
        assert main(["connections", "init"]) == 0
        first = client.get(key)
        assert isinstance(first, bytes)
        assert main(["connections", "init"]) == 0
        assert client.get(key) == first, "an existing epoch is kept"
        assert f"configuration epoch: {first.decode()}" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
        client.delete(key)
        client.close()
