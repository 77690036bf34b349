"""Replay, end to end: real worker, Kafka, Redis and webhook receiver, the real command.

Two tenants' events are delivered live; a replay of one tenant's window (the operator's
``queast-integrations replay``) re-delivers exactly that tenant's artifacts of the window, with
the same webhook ids and the replay id, and nothing else; history and the live group's
committed offsets are untouched; a dry run sends nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions
from redis.asyncio import Redis

from connectors.registry import registered
from processors.kafka import admin_client
from processors.operations.history import HistoryReader
from processors.operations.runs import RunRecord, RunStatus, RunStore
from processors.samples import sample_events
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.test_delivery import (
    _applied,
    _connect,
    _expected_keys,
    _one_version_each,
    _publish,
    _wait,
    delivery_env,
    receiver,
)
from tests.sandboxes.webhook_receiver import ReceiverServer
from tests.support.infrastructure import REPO_ROOT
from tests.support.kafka_io import read_to_end
from tests.support.worker import WorkerProcess

__all__ = ["delivery_env", "receiver"]

A, B = "t_replay_a", "t_replay_b"


def _end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    with HistoryReader(settings.kafka) as reader:
        return {
            (topic, partition): reader.span(topic, partition).end
            for topic in topics
            for partition in range(reader.partitions(topic))
        }


def _committed(settings: Settings, group_prefix: str) -> dict[tuple[str, str, int], int]:
    """Committed offsets of every consumer group of the test's workers, but the retry topics'
    (the copies of a replay travel there, and the live group consumes them as usual)."""
    admin = admin_client(settings.kafka)
    listed = admin.list_consumer_groups().result(timeout=10)
    groups = [g.group_id for g in listed.valid if g.group_id.startswith(group_prefix)]
    assert groups, "the worker has a consumer group"
    offsets: dict[tuple[str, str, int], int] = {}
    for group in groups:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        for found in futures.values():
            for tp in found.result(timeout=10).topic_partitions or []:
                if ".integrations.retry." not in tp.topic:
                    offsets[(group, tp.topic, tp.partition)] = tp.offset
    return offsets


def _replay_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "processors", "replay", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _replayed(receiver: ReceiverServer, tenant: str, replay_id: str) -> Counter[str]:
    return Counter(
        d.webhook_id
        for d in receiver.received(tenant)
        if d.replay_id == replay_id and d.delivered and d.webhook_id is not None
    )


async def _run(settings: Settings, replay_id: str) -> RunRecord | None:
    client = Redis.from_url(settings.redis.url)
    try:
        store = RunStore(client, key_prefix=settings.redis.key_prefix)
        return await store.get(replay_id)
    finally:
        await client.aclose()


async def test_a_replay_of_one_tenants_window_redelivers_exactly_its_artifacts(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    delivery_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
    test_id: str,
) -> None:
    tenants = [A, B]
    await _connect(repository, settings, receiver, tenants)
    events = _one_version_each(sample_events(tenants, 240, seed=59))
    before_window, in_window = events[: len(events) // 2], events[len(events) // 2 :]
    start_worker(worker_factory, delivery_env, tmp_path)

    _publish(settings, topics, before_window)
    first = _expected_keys(before_window)
    assert await _wait(lambda: set(_applied(receiver, tenants)) >= first, within=120)
    since = datetime.now(UTC)
    _publish(settings, topics, in_window)
    everything = _expected_keys(events)
    assert await _wait(lambda: set(_applied(receiver, tenants)) >= everything, within=120)
    until = datetime.now(UTC)
    window_a = _expected_keys([e for e in in_window if e["tenant_id"] == A])
    assert window_a, "tenant A has artifacts in the window"

    history = [topics.exports(name) for name in registered()] + [topics.domain_events]
    ends = _end_offsets(settings, history)

    def settled() -> bool:
        committed = _committed(settings, test_id)
        return all(
            committed.get((group, topic, partition)) == ends[(topic, partition)]
            for (group, topic, partition) in committed
            if (topic, partition) in ends and ends[(topic, partition)] > 0
        ) and any(topic == topics.exports("webhook") for _, topic, _ in committed)

    assert await _wait(settled, within=60), "the live group commits everything it delivered"
    committed_before = _committed(settings, test_id)
    live_counts = {t: Counter(receiver.count_by_id(t)) for t in tenants}
    retry_ends = _end_offsets(settings, [topics.retry("webhook")])
    window = ["--since", since.isoformat(), "--until", until.isoformat()]

    # A dry run counts and sends nothing.
    code, out, err = _replay_cli(
        delivery_env, "--tenant", A, "--connector", "webhook", *window, "--dry-run", "--json"
    )
    assert code == 0, err
    dry = json.loads(out.strip().splitlines()[-1])
    assert dry["dry_run"] is True
    assert dry["matched"] == len(window_a)
    assert dry["queued"] == 0
    samples = [json.loads(line)["sample"] for line in out.strip().splitlines()[:-1]]
    assert 1 <= len(samples) <= 5
    assert all(s["idempotency_key"] in window_a and "payload" in s for s in samples)
    assert _end_offsets(settings, [topics.retry("webhook")]) == retry_ends, "a dry run sends"

    # The replay.
    code, out, err = _replay_cli(
        delivery_env, "--tenant", A, "--connector", "webhook", *window, "--json"
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"replay_id", "matched", "queued", "dry_run"}
    assert summary["dry_run"] is False
    assert summary["matched"] == summary["queued"] == len(window_a)
    replay_id = summary["replay_id"]

    assert await _wait(lambda: set(_replayed(receiver, A, replay_id)) >= window_a, within=120), (
        f"replayed {len(_replayed(receiver, A, replay_id))} of {len(window_a)}"
    )

    run = await _run(settings, replay_id)
    deadline = time.monotonic() + 60
    while run is not None and run.delivered + run.failed < run.queued:
        assert time.monotonic() < deadline, f"the run's counts stay at {run}"
        await asyncio.sleep(0.25)
        run = await _run(settings, replay_id)
    assert run is not None
    assert run.status is RunStatus.COMPLETED
    assert run.delivered == run.queued == len(window_a)
    assert run.failed == 0

    replayed = _replayed(receiver, A, replay_id)
    assert set(replayed) == window_a, "exactly tenant A's artifacts of the window, same ids"
    assert max(replayed.values()) == 1, "each artifact replayed once"
    for delivery in receiver.received(A):
        if delivery.replay_id is not None:
            assert delivery.signature_valid, delivery.signature_error
            assert delivery.replay_id == replay_id
    assert Counter(receiver.count_by_id(B)) == live_counts[B], "nothing for tenant B"
    assert not [d for d in receiver.received(B) if d.replay_id is not None]
    outside = Counter(receiver.count_by_id(A)) - live_counts[A]
    assert set(outside) == window_a, "nothing of tenant A outside the window"

    records = [
        json.loads(r.value or b"{}")
        for r in read_to_end(
            settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS
        )
    ]
    replay_records = [r for r in records if r.get("replay_id") == replay_id]
    delivered: set[Any] = {
        r["idempotency_key"] for r in replay_records if r["status"] == "delivered"
    }
    assert delivered == window_a, "the delivery records carry the replay id"
    assert {r["tenant_id"] for r in replay_records} == {A}

    assert _end_offsets(settings, history) == ends, "nothing appended to the exports"
    assert _committed(settings, test_id) == committed_before, "the live offsets did not move"
