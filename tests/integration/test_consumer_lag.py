"""``qi_consumer_lag`` against the real broker: exact values per partition, and the worker's own."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from processors.consumerlag import ConsumerLagExporter, ConsumerLagProbe, consumed_topics
from processors.kafka import producer
from processors.settings import Settings
from processors.tenants.seed import initialise_configuration
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import produce
from tests.support.worker import WorkerProcess, free_port


def _produce_to(settings: Settings, topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` records to partition ``p`` of ``topic``."""
    client = producer(settings.kafka)
    for partition, count in counts.items():
        for n in range(count):
            client.produce(topic, value=f"{partition}-{n}".encode(), partition=partition)
    assert client.flush(30) == 0


def _commit(settings: Settings, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (as an idle group's last commit)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, offset) for (t, p), offset in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


def _delete_before(settings: Settings, topic: str, offsets: dict[int, int]) -> None:
    """Delete the records of ``topic`` before ``offsets[p]`` (the low watermark moves up)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    request = [TopicPartition(topic, p, offset) for p, offset in offsets.items()]
    for future in admin.delete_records(request, request_timeout=30).values():
        future.result(30)


def _exported(group: str, topics: list[str]) -> dict[tuple[str, int], float]:
    """Every ``qi_consumer_lag`` value of ``group`` in this process's registry."""
    values: dict[tuple[str, int], float] = {}
    for topic in topics:
        for partition in range(PARTITIONS + 2):
            value = REGISTRY.get_sample_value(
                "qi_consumer_lag", {"group": group, "topic": topic, "partition": str(partition)}
            )
            if value is not None:
                values[(topic, partition)] = value
    return values


async def test_lag_is_the_high_watermark_minus_the_committed_offset_per_partition(
    settings: Settings, topics: TopicMap, test_id: str
) -> None:
    group = test_id
    events, exports = topics.domain_events, topics.exports("webhook")
    absent = f"{settings.topics.prefix}not-created"
    worker_topics = consumed_topics(settings)
    _produce_to(settings, events, {0: 10, 1: 7, 2: 5, 3: 6})
    _produce_to(settings, exports, {1: 3})
    _commit(settings, group, {(events, 0): 4, (events, 1): 7, (events, 3): 1, (exports, 1): 1})
    # partition 2: nothing committed, two records deleted; partition 3: committed below the
    # new low watermark (the consumer would reset to it), so both count from the low watermark
    _delete_before(settings, events, {2: 2, 3: 3})

    probe = ConsumerLagProbe(
        settings.kafka, group=group, topics=[*worker_topics, absent], timeout=10.0
    )
    exporter = ConsumerLagExporter(probe, interval=15.0)
    try:
        assert await exporter.refresh()
        expected = {(topic, p): 0.0 for topic in worker_topics for p in range(PARTITIONS)}
        expected |= {(events, 0): 6, (events, 1): 0, (events, 2): 3, (events, 3): 3}
        expected |= {(exports, 1): 2}
        assert _exported(group, [*worker_topics, absent]) == expected

        _produce_to(settings, events, {1: 2})
        _commit(settings, group, {(events, 0): 10})
        assert await exporter.refresh()
        expected |= {(events, 0): 0, (events, 1): 2}
        assert _exported(group, [*worker_topics, absent]) == expected
    finally:
        probe.close()


class _Failover:
    """A probe that asks the real broker until ``broker_gone``, then a port nobody listens on."""

    def __init__(self, live: ConsumerLagProbe, dead: ConsumerLagProbe) -> None:
        self._live, self._dead = live, dead
        self.broker_gone = False

    @property
    def group(self) -> str:
        return self._live.group

    def sample(self) -> dict[tuple[str, int], int]:
        return (self._dead if self.broker_gone else self._live).sample()

    def close(self) -> None:
        self._live.close()
        self._dead.close()


async def test_an_unreachable_broker_keeps_the_last_values_and_the_exporter_running(
    settings: Settings, topics: TopicMap, test_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    group = test_id
    _produce_to(settings, topics.domain_events, {0: 4})
    nowhere = settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    probe = _Failover(
        ConsumerLagProbe(settings.kafka, group=group, topics=[topics.domain_events], timeout=10),
        ConsumerLagProbe(nowhere, group=group, topics=[topics.domain_events], timeout=1),
    )
    exporter = ConsumerLagExporter(probe, interval=15.0, timeout=5.0)
    try:
        assert await exporter.refresh()
        probe.broker_gone = True
        with caplog.at_level(logging.WARNING, logger="processors.consumerlag"):
            assert not await exporter.refresh()
            assert not await exporter.refresh()
    finally:
        probe.close()
    events = [r.getMessage() for r in caplog.records if r.name == "processors.consumerlag"]
    assert events == ["metrics.consumer_lag.sample_failed"] * 2
    assert _exported(group, [topics.domain_events])[(topics.domain_events, 0)] == 4


async def _lag_series(worker_env: dict[str, str], group: str) -> dict[tuple[str, int], float]:
    """The ``qi_consumer_lag`` series of ``group`` on the worker's ``/metrics`` ({} until it
    serves)."""
    url = f"http://127.0.0.1:{worker_env['QI_METRICS_PORT']}/metrics"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(url)).raise_for_status().text
    except httpx.TransportError:
        return {}
    return {
        (sample.labels["topic"], int(sample.labels["partition"])): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "qi_consumer_lag" and sample.labels.get("group") == group
    }


async def _wait_for_series(
    env: dict[str, str], group: str, done: Callable[[dict[tuple[str, int], float]], bool]
) -> dict[tuple[str, int], float]:
    deadline = time.monotonic() + 120
    series = await _lag_series(env, group)
    while not done(series) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        series = await _lag_series(env, group)
    return series


async def test_the_worker_exports_its_own_groups_lag(
    qi_env: dict[str, str],
    settings: Settings,
    topics: TopicMap,
    test_id: str,
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    env = {
        **qi_env,
        "QI_METRICS_LAG_INTERVAL_SECONDS": "1",
        "QI_WORKER_DELIVERY_CONNECTORS": '["webhook"]',
    }
    events = [
        (
            b"t_lag",
            json.dumps(
                {
                    "event_id": uuid.uuid4().hex,
                    "event_type": "company.upserted",
                    "schema_version": "1.0",
                    "tenant_id": "t_lag",
                    "occurred_at": "2026-11-26T05:00:00Z",
                    "data": {"company_id": f"co_{n}", "name": f"Company {n}", "version": 1},
                }
            ).encode(),
        )
        for n in range(20)
    ]
    assert produce(settings.kafka.bootstrap_servers, topics.domain_events, events) == 20
    # No configuration epoch yet: the routing agent holds its partitions and commits nothing,
    # so the tenant's partition lags by exactly its 20 events.
    start_worker(worker_factory, env, tmp_path)
    keys = {
        (topic, p)
        for topic in (topics.domain_events, topics.exports("webhook"), topics.retry("webhook"))
        for p in range(PARTITIONS)
    }

    def held(series: dict[tuple[str, int], float]) -> bool:
        return set(series) == keys and sum(series.values()) == 20

    series = await _wait_for_series(env, test_id, held)
    assert set(series) == keys
    lagging = {key: value for key, value in series.items() if value}
    assert len(lagging) == 1, lagging
    assert next(iter(lagging))[0] == topics.domain_events
    assert sum(lagging.values()) == 20

    # The configuration is written: the events are routed (nobody takes them) and committed.
    await initialise_configuration(settings=settings)
    series = await _wait_for_series(env, test_id, lambda s: set(s) == keys and not any(s.values()))
    assert series == dict.fromkeys(keys, 0.0)
