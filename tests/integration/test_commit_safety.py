"""No committed offset passes a record the worker still holds, whatever stops the worker.

Two tenants' retry records share a retry partition. The first tenant's endpoint answers 503
with ``Retry-After: 20``: its records wait in the retry buffer, unacknowledged. The second
tenant's endpoint fails once with ``Retry-After: 1``: its retries, read after the first
tenant's, are delivered and acknowledged meanwhile. Faust's own consumer commits past the held
records then (it checks nothing while a partition has no committed offset yet); the worker's
consumer commits no further than the first held record. The worker is then killed, or stopped
with ``SIGTERM`` (it no longer waits for held records), and started again once the first
endpoint recovers: the held records are read again and delivered, each exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

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
    _publish,
    _wait,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.worker import WorkerProcess


def _partition(key: str) -> int:
    """The partition Kafka's default partitioner gives ``key`` (retry records: the tenant)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _two_tenants_on_one_partition() -> tuple[str, str]:
    first = "t_cs_held"
    for n in itertools.count():
        other = f"t_cs_quick{n}"
        if _partition(other) == _partition(first):
            return first, other
    raise AssertionError  # pragma: no cover (count() never ends)


HELD, QUICK = _two_tenants_on_one_partition()


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


@pytest.mark.parametrize("stop", ["kill", "terminate"])
async def test_records_held_when_the_worker_stops_are_delivered_after_the_restart(
    stop: str,
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    await _connect(repository, settings, receiver, [HELD, QUICK])
    receiver.set_behaviour(HELD, Behaviour(status=503, retry_after=20.0))
    receiver.set_behaviour(QUICK, Behaviour(fail_first_n=1, retry_after=1.0))
    held_events = sample_events([HELD], 5, seed=91)
    quick_events = sample_events([QUICK], 5, seed=92)
    held_keys, quick_keys = _expected_keys(held_events), _expected_keys(quick_events)

    worker = start_worker(worker_factory, {**qi_env, **FAST_RETRIES}, tmp_path)
    _publish(settings, topics, held_events)
    tried = await _wait(lambda: set(receiver.state.count_by_id(HELD)) != set(), within=60)
    assert tried, "the held tenant's endpoint was never called"
    _publish(settings, topics, quick_events)
    quick = await _wait(lambda: set(_applied(receiver, [QUICK])) >= quick_keys, within=30)
    assert quick, "the quick tenant's retries were not delivered"
    assert _applied(receiver, [HELD]) == {}
    await asyncio.sleep(3)  # a few commit intervals
    if stop == "kill":
        worker.kill()
    else:
        worker.stop()

    receiver.set_behaviour(HELD, None)  # the endpoint recovers
    start_worker(worker_factory, {**qi_env, **FAST_RETRIES}, tmp_path)
    delivered = await _wait(lambda: set(_applied(receiver, [HELD])) >= held_keys, within=90)
    applied = _applied(receiver, [HELD, QUICK])
    assert delivered, f"held records lost: {len(held_keys - set(applied))} of {len(held_keys)}"
    await asyncio.sleep(2)  # anything sent twice would show up now
    applied = _applied(receiver, [HELD, QUICK])
    assert set(applied) == held_keys | quick_keys
    assert all(count == 1 for count in applied.values()), applied
