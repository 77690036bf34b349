"""A worker holding records for a slow partner gives its partitions up at once in a rebalance.

One tenant's endpoint answers 503 with ``Retry-After: 120``, so the first worker holds that
tenant's records unacknowledged in its retry buffer. A second worker then joins the group.
Faust's own wait (``stream_wait_empty``) would keep the first worker from giving up its
partitions until every held record was acknowledged, two minutes away: the whole group would
deliver nothing meanwhile, past the broker's rebalance timeout (60 s). The worker drops what
it holds from revoked partitions instead (:mod:`processors.agents.deliver`), so the rebalance
ends promptly: both workers get partitions and the healthy tenants' records, published after
the second worker started, are delivered exactly once while the slow tenant still waits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

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
from tests.support.kafka_io import TopicReader
from tests.support.worker import WorkerProcess

SLOW = "t_rv_slow"
HEALTHY = [f"t_rv{i}" for i in range(8)]
REBALANCE_WITHIN_SECONDS = 45.0
"""How long the second worker may take to start and get partitions. A rebalance stalled by
the first worker's held records lasts until they are acknowledged (two minutes) or the
broker's rebalance timeout (60 s) evicts the first worker."""


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


def _dropped_from_retry_buffer(log: Path) -> int:
    """Records the worker logging to ``log`` dropped from its retry buffer on revocations."""
    dropped = 0
    for line in log.read_text(errors="replace").splitlines():
        if '"delivery.partitions.revoked"' in line:
            dropped += int(json.loads(line).get("dropped_retry_buffer", 0))
    return dropped


def _members_with_partitions(bootstrap_servers: str, group: str) -> int:
    """How many members of ``group`` have partitions assigned."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return sum(1 for member in description.members if member.assignment.topic_partitions)


async def test_a_worker_holding_records_for_a_slow_partner_does_not_stall_the_rebalance(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    await _connect(repository, settings, receiver, [SLOW, *HEALTHY])
    receiver.set_behaviour(SLOW, Behaviour(status=503, retry_after=120.0))
    env = {**qi_env, **FAST_RETRIES, "QI_METRICS_PORT": "0"}  # two workers on one machine
    slow_events = sample_events([SLOW], 20, seed=81)
    slow_keys = _expected_keys(slow_events)
    healthy_events = _one_version_each(sample_events(HEALTHY, 400, seed=82))
    healthy_keys = _expected_keys(healthy_events)

    start_worker(worker_factory, env, tmp_path)
    _publish(settings, topics, slow_events)
    # every slow record was tried or deferred, and waits on the retry topic for two minutes
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    def waiting() -> set[str]:
        reader.poll_for(0.5)
        return {
            record["idempotency_key"]
            for record in (json.loads(r.value or b"{}") for r in reader.records)
            if record["status"] in {"retry_scheduled", "deferred"}
        }

    held = await _wait(lambda: waiting() >= slow_keys, within=60)
    reader.close()
    assert held, "the slow tenant's records were not all scheduled for a later retry"
    await asyncio.sleep(2)  # the retry agent reads them into its buffer

    first_log = worker_factory[0].log_path
    second = start_worker(worker_factory, env, tmp_path)

    def both_have_partitions() -> bool:
        group = settings.worker.app_id
        return _members_with_partitions(settings.kafka.bootstrap_servers, group) == 2

    rebalanced = await _wait(both_have_partitions, within=REBALANCE_WITHIN_SECONDS, interval=1.0)
    assert rebalanced, "the second worker got no partitions: the rebalance stalled"
    assert second.running
    dropped = _dropped_from_retry_buffer(first_log)
    assert dropped > 0, "the first worker held none of the slow tenant's records"

    _publish(settings, topics, healthy_events)
    delivered = await _wait(lambda: set(_applied(receiver, HEALTHY)) >= healthy_keys, within=90)
    applied = _applied(receiver, HEALTHY)
    assert delivered, f"{len(healthy_keys - set(applied))} of {len(healthy_keys)} not delivered"
    await asyncio.sleep(3)  # anything sent twice would show up now
    applied = _applied(receiver, HEALTHY)
    assert set(applied) == healthy_keys
    twice = {key: count for key, count in applied.items() if count > 1}
    assert twice == {}, f"accepted more than once: {list(twice)[:5]}"
    # the slow tenant still waits: tried, never accepted
    assert set(receiver.state.count_by_id(SLOW)) <= slow_keys
    assert sum(receiver.state.count_by_id(SLOW).values()) > 0
    assert _applied(receiver, [SLOW]) == {}
    assert _members_with_partitions(settings.kafka.bootstrap_servers, settings.worker.app_id) == 2
