"""Workers joining and leaving one consumer group mid-run: no double write, no stale overwrite.

Two workers start together on a stream of several rounds of newer versions of the same
entities; a third joins mid-run and one of the first two leaves. Partitions move while the old
owners still hold records in their lanes and retry buffers, and the new owners read those
records again from the last committed offset. The receiver records every request: each key is
accepted once (or skipped because a newer version of its entity was accepted first), and no
entity's accepted versions ever go back.

When partitions are revoked, a worker drops the records of theirs that have not started
sending and gives the partitions up at once (:mod:`processors.agents.deliver`); the batches it
already took finish while the new owner reads the same records again. The send claim
(:mod:`processors.deliveries.state`) is what keeps the two from writing the same entity. The
unit tests in ``tests/unit/deliveries/test_engine.py`` put two engines exactly in that race.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
from tests.sandboxes.webhook_receiver import Behaviour, Delivery, ReceiverServer
from tests.support.kafka_io import TopicReader
from tests.support.worker import WorkerProcess

TENANTS = [f"t_rb{i}" for i in range(8)]
ROUNDS = 6
PER_ROUND = 240
LANES = 4
_ID_FIELDS = {
    "company": "company_id",
    "person": "person_id",
    "signal": "signal_id",
    "job_ad": "job_ad_id",
}


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


def _entity(delivery: Delivery) -> tuple[str, str, str]:
    family = (delivery.type or "").split(".", maxsplit=1)[0]
    data: dict[str, Any] = delivery.data
    return delivery.endpoint, family, str(data[_ID_FIELDS[family]])


def _stale_overwrites(receiver: ReceiverServer) -> list[tuple[tuple[str, str, str], int, int]]:
    """Writes of an older version after a newer one of the same entity was accepted."""
    writes: dict[tuple[str, str, str], list[Delivery]] = defaultdict(list)
    for tenant in TENANTS:
        for delivery in receiver.received(tenant):
            if delivery.delivered and isinstance(delivery.data, dict):
                writes[_entity(delivery)].append(delivery)
    stale = []
    for entity, history in writes.items():
        newest = -1
        for delivery in sorted(history, key=lambda d: d.received_at):
            version = int(delivery.data["entity_version"])
            if version < newest:
                stale.append((entity, newest, version))
            newest = max(newest, version)
    return stale


async def test_workers_joining_and_leaving_neither_double_write_nor_overwrite_newer_versions(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    await _connect(repository, settings, receiver, TENANTS)
    # every answer takes a moment, so lanes hold requests in flight when partitions move;
    # one tenant's endpoint fails at first, so retry buffers hold records too
    receiver.set_default_behaviour(Behaviour(delay_seconds=0.1))
    receiver.set_behaviour(
        TENANTS[0], Behaviour(delay_seconds=0.1, fail_first_n=100, retry_after=1.0)
    )
    env = {
        **qi_env,
        **FAST_RETRIES,
        "QI_DELIVERY_LANE_CONCURRENCY": str(LANES),
        "QI_DELIVERY_CLAIM_LEASE_SECONDS": "5",
        "QI_METRICS_PORT": "0",  # three workers on one machine
    }
    rounds = [
        sample_events(TENANTS, PER_ROUND, seed=71, version_offset=r * 100) for r in range(ROUNDS)
    ]
    expected = set().union(*(_expected_keys(events) for events in rounds))

    def publish_rounds() -> None:
        for events in rounds:
            _publish(settings, topics, events)
            time.sleep(2.0)

    def worker() -> WorkerProcess:
        return start_worker(worker_factory, env, tmp_path)

    first, _second = worker(), worker()
    publisher = threading.Thread(target=publish_rounds)
    publisher.start()
    await asyncio.sleep(7)
    worker()  # joins: partitions move from the first two to it
    await asyncio.sleep(7)
    delivered_when_leaving = len(_applied(receiver, TENANTS))
    first.stop()  # leaves: its partitions move to the others
    await asyncio.to_thread(publisher.join)

    # Each key is accepted by the receiver, or skipped because a newer version of its entity
    # was accepted first (a failed older version's retry comes back after the newer one).
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    def outcome_of_every_key() -> bool:
        reader.poll_for(0.5)
        return set(applied_or_stale(reader)) >= expected

    def applied_or_stale(reader: TopicReader) -> set[str]:
        stale = {
            record["idempotency_key"]
            for record in (json.loads(r.value or b"{}") for r in reader.records)
            if record["status"] == "stale_skipped"
        }
        return set(_applied(receiver, TENANTS)) | stale

    done = await _wait(outcome_of_every_key, within=150)
    statuses = Counter(json.loads(r.value or b"{}")["status"] for r in reader.records)
    missing = expected - applied_or_stale(reader)
    reader.close()
    assert done, f"{len(missing)} of {len(expected)} keys without an outcome; records: {statuses}"
    await asyncio.sleep(3)  # anything sent twice or late would show up now
    applied = _applied(receiver, TENANTS)
    assert set(applied) <= expected
    assert 0 < delivered_when_leaving < len(expected), "the worker left mid-run"
    requests: Counter[str] = Counter()
    for tenant in TENANTS:
        requests.update(receiver.state.count_by_id(tenant))
    twice = sum(count - 1 for count in applied.values())
    stale = _stale_overwrites(receiver)
    print(
        f"{len(expected)} keys, {sum(requests.values())} requests, {len(applied)} accepted, "
        f"{len(expected) - len(applied)} skipped as stale; accepted twice: {twice}; "
        f"stale overwrites: {len(stale)}; delivery records: {dict(statuses)}"
    )
    assert stale == [], stale[:5]
    # Only a request in flight at the moment a worker left (answered by the receiver, not yet
    # recorded by the worker) may be sent again: at most one per lane task of the leaver.
    assert twice <= len(TENANTS) * LANES, twice
