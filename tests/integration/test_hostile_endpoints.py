"""Hostile endpoints against the real worker, Kafka, Redis and HTTP receiver.

Two tenants' endpoints answer every request 429 with an absurd ``Retry-After`` (``1e308``,
``1e9``): the worker must bound the wait, keep running, deliver every other tenant's records,
and keep committing the retry topic while those tenants' records wait.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

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
from tests.support.kafka_io import TopicReader
from tests.support.worker import WorkerProcess

HOSTILE = {"t_huge": "1e308", "t_far": "1e9"}
HOUR_MS = 3600 * 1000


def _committed_and_ends(settings: Settings, group: str, topic: str) -> tuple[list[int], list[int]]:
    """The group's committed offsets of ``topic`` and its end offsets, per partition."""
    client = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = [max(tp.offset, 0) for tp in client.committed(partitions, timeout=10)]
        ends = [client.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    finally:
        client.close()
    return committed, ends


async def test_endpoints_asking_for_centuries_cannot_stall_the_others(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    healthy = [f"t_ok_{i:02d}" for i in range(8)]
    tenants = [*healthy, *HOSTILE]
    env = {**qi_env, **FAST_RETRIES, "QI_DELIVERY_RETRY_HOLD_SECONDS": "1"}
    with ReceiverServer() as receiver:
        await _connect(repository, settings, receiver, tenants)
        for tenant, retry_after in HOSTILE.items():
            receiver.set_behaviour(tenant, Behaviour(status=429, retry_after_text=retry_after))
        events = sample_events(tenants, 500, seed=71)
        wanted = _expected_keys([e for e in events if e["tenant_id"] in healthy])
        hostile_events = {t: sum(e["tenant_id"] == t for e in events) for t in HOSTILE}
        _publish(settings, topics, events)
        worker = start_worker(worker_factory, env, tmp_path)

        assert await _wait(lambda: len(_applied(receiver, healthy)) >= len(wanted), within=180), (
            f"delivered {len(_applied(receiver, healthy))} of {len(wanted)}"
        )
        applied = _applied(receiver, healthy)
        assert set(applied) == wanted
        assert max(applied.values()) == 1
        for tenant, count in hostile_events.items():
            answered = receiver.received(tenant)
            assert answered, f"{tenant} was tried"
            assert {d.status for d in answered} == {429}
            assert len(answered) < count, f"{tenant}'s pause held its other records back"

        # The hostile tenants' records wait on the retry topic, at most an hour away.
        retry_topic = topics.retry("webhook")
        reader = TopicReader(settings.kafka.bootstrap_servers, [retry_topic], PARTITIONS)
        waiting = reader.wait_until(
            lambda rs: {r.header("qi.tenant_id") for r in rs} >= set(HOSTILE),
            timeout=60,
            settle=1.0,
        )
        reader.close()
        latest = max(int(r.header("qi.not_before")) for r in waiting)
        assert latest <= time.time() * 1000 + HOUR_MS, "a wait of more than an hour"
        assert {r.header("qi.tenant_id") for r in waiting} == set(HOSTILE)

        # Waiting records do not pin the retry topic: everything on it now gets committed
        # (each is re-queued as a new hop after the one-second hold).
        group = settings.worker.app_id
        _, ends = _committed_and_ends(settings, group, retry_topic)

        def committed_past_the_ends() -> bool:
            committed, _ = _committed_and_ends(settings, group, retry_topic)
            return all(c >= e for c, e in zip(committed, ends, strict=True))

        assert await _wait(committed_past_the_ends, within=60, interval=1.0), (
            f"retry topic committed {_committed_and_ends(settings, group, retry_topic)[0]} "
            f"of {ends}"
        )
        assert worker.running, "the worker survived"
        log = (tmp_path / "worker-0.log").read_text()
        assert "OverflowError" not in log
