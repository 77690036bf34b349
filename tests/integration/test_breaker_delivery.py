"""A failing destination trips its breaker, others are unaffected, and a success resumes it.

Real worker process, Kafka, Redis and HTTP receiver. The breaker's threshold and probe
intervals are made small through the worker's settings; nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from processors.deliveries.state import DeliveryStateRepository
from processors.samples import sample_events
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.test_delivery import (
    FAST_RETRIES,
    _applied,
    _connect,
    _expected_keys,
    _one_version_each,
    _publish,
    _wait,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.kafka_io import ConsumedRecord, TopicReader
from tests.support.worker import WorkerProcess

FAILING = "t_down"
HEALTHY = "t_up"
BREAKER = {
    "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "60",
    "QI_DELIVERY_BREAKER_THRESHOLD": "3",
    "QI_DELIVERY_BREAKER_PROBE_INITIAL_SECONDS": "1",
    "QI_DELIVERY_BREAKER_PROBE_MAX_SECONDS": "2",
    "QI_DELIVERY_PARK_RECHECK_SECONDS": "1",
}


def _decoded(records: list[ConsumedRecord], tenant: str) -> list[dict[str, Any]]:
    decoded = (json.loads(r.value or b"{}") for r in records)
    return [d for d in decoded if d["tenant_id"] == tenant]


def _delivered(records: list[ConsumedRecord], tenant: str) -> set[str]:
    return {d["idempotency_key"] for d in _decoded(records, tenant) if d["status"] == "delivered"}


async def _metrics(qi_env: dict[str, str]) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{qi_env['QI_METRICS_PORT']}/metrics")
    samples = {}
    for line in response.text.splitlines():
        if line.startswith("qi_connection"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_a_failing_connection_trips_waits_without_attempts_and_resumes_on_success(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    redis = Redis.from_url(settings.redis.url)
    state = DeliveryStateRepository(
        redis, key_prefix=settings.redis.key_prefix, dedupe_ttl_seconds=600, hop_ttl_seconds=600
    )
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)
    with ReceiverServer() as receiver:
        try:
            receiver.set_behaviour(FAILING, Behaviour(status=503))
            await _connect(repository, settings, receiver, [FAILING, HEALTHY])
            events = _one_version_each(sample_events([FAILING, HEALTHY], 300, seed=7))
            expected = {
                tenant: _expected_keys([e for e in events if e["tenant_id"] == tenant])
                for tenant in (FAILING, HEALTHY)
            }
            assert expected[FAILING]
            assert expected[HEALTHY]
            _publish(settings, topics, events)
            start_worker(worker_factory, {**qi_env, **FAST_RETRIES, **BREAKER}, tmp_path)

            # the failing tenant's connection trips; its records wait, no attempt spent
            async def tripped() -> bool:
                return (await state.breaker(f"conn_{FAILING}")).failing

            for _ in range(240):
                if await tripped():
                    break
                await asyncio.sleep(0.25)
            assert await tripped(), "the breaker did not trip"

            def some_waiting(records: list[ConsumedRecord]) -> bool:
                waiting = [d for d in _decoded(records, FAILING) if d["status"] == "waiting"]
                return any(d["attempt"] == 0 for d in waiting)

            records = reader.wait_until(some_waiting, timeout=60)
            failing_records = _decoded(records, FAILING)
            waiting = [d for d in failing_records if d["status"] == "waiting"]
            assert waiting, "no record of the failing connection waits"
            assert any(d["attempt"] == 0 for d in waiting), "a record never tried waits"
            assert all(d["last_error"]["error_class"] == "ConnectionFailing" for d in waiting)
            assert "dead_lettered" not in {d["status"] for d in failing_records}
            assert _applied(receiver, [FAILING]) == Counter()

            # meanwhile the other tenant's deliveries all arrive
            assert await _wait(
                lambda: set(_applied(receiver, [HEALTHY])) >= expected[HEALTHY], within=120
            ), f"healthy tenant: {len(_applied(receiver, [HEALTHY]))} of {len(expected[HEALTHY])}"
            assert await tripped(), "still failing while the other tenant was served"
            metrics = await _metrics(qi_env)
            assert metrics.get('qi_connections_failing{connector="webhook"}') == 1.0
            changes = 'qi_connection_state_changes_total{connector="webhook",state="failing"}'
            assert metrics.get(changes) == 1.0

            # the receiver recovers: a probe succeeds, the connection resumes, all arrive once
            receiver.set_behaviour(FAILING, Behaviour(status=200))
            assert await _wait(
                lambda: set(_applied(receiver, [FAILING])) >= expected[FAILING], within=180
            ), f"failing tenant: {len(_applied(receiver, [FAILING]))} of {len(expected[FAILING])}"
            await asyncio.sleep(2)  # anything sent twice would show up now
            for tenant in (FAILING, HEALTHY):
                applied = _applied(receiver, [tenant])
                assert set(applied) == expected[tenant]
                assert max(applied.values()) == 1, f"{tenant}: a key was delivered twice"
            assert not (await state.breaker(f"conn_{FAILING}")).counting
            metrics = await _metrics(qi_env)
            assert metrics.get('qi_connections_failing{connector="webhook"}') == 0.0
            resumed = 'qi_connection_state_changes_total{connector="webhook",state="enabled"}'
            assert metrics.get(resumed) == 1.0

            records = reader.wait_until(
                lambda rs: _delivered(rs, FAILING) >= expected[FAILING], timeout=60
            )
            statuses = {d["status"] for d in _decoded(records, FAILING)}
            assert "dead_lettered" not in statuses
        finally:
            reader.close()
            await redis.aclose()
