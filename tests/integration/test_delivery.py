"""The whole outbound path to signed webhooks: real worker, Kafka, Redis and HTTP receiver."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.routing.idempotency import idempotency_key
from processors.samples import sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer, generate_secret
from tests.support.kafka_io import TopicReader, produce
from tests.support.worker import WorkerProcess

FAST_RETRIES = {
    "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "2",
    "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "12",
    "QI_DELIVERY_DEFER_MIN_SECONDS": "0.5",
    "QI_DELIVERY_DEFER_MAX_SECONDS": "2",
}
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


@pytest.fixture
def delivery_env(qi_env: dict[str, str]) -> dict[str, str]:
    return {**qi_env, **FAST_RETRIES}


async def _connect(
    repository: ConnectionRepository,
    settings: Settings,
    receiver: ReceiverServer,
    tenants: list[str],
    *,
    rate: int = 1000,
) -> dict[str, str]:
    """One webhook connection per tenant, each with its own secret; returns the secrets."""
    box = settings.secrets.secret_box()
    secrets: dict[str, str] = {}
    for tenant in tenants:
        secret = generate_secret()
        secrets[tenant] = secret
        receiver.set_secret(tenant, secret)
        connection = ConnectionRecord.model_validate(
            {
                "tenant_id": tenant,
                "connector": "webhook",
                "connection_id": f"conn_{tenant}",
                "delivery_mode": "webhook",
            }
        )
        block = {
            "webhook": {"url": receiver.endpoint_url(tenant), "secret": secret},
            "rate_limit_per_second": rate,
            "max_concurrency": 8,
        }
        sealed = seal_settings(
            block, box=box, tenant_id=tenant, connection_id=connection.connection_id
        )
        await repository.allow(tenant)
        await repository.put(connection.model_copy(update={"settings": sealed}))
    return secrets


def _entity_versions(events: list[dict[str, Any]]) -> dict[str, tuple[tuple[str, ...], int]]:
    """Each event's idempotency key at its webhook connection -> (its entity, its version)."""
    keyed: dict[str, tuple[tuple[str, ...], int]] = {}
    for e in events:
        family = e["event_type"].split(".", maxsplit=1)[0]
        entity_id = e["data"][_ID_FIELDS[family]]
        key = idempotency_key(
            tenant_id=e["tenant_id"],
            connector="webhook",
            connection_id=f"conn_{e['tenant_id']}",
            event_type=e["event_type"],
            entity_id=entity_id,
            entity_version=e["data"]["version"],
        )
        keyed[key] = ((e["tenant_id"], family, entity_id), int(e["data"]["version"]))
    return keyed


def _expected_keys(events: list[dict[str, Any]]) -> set[str]:
    return set(_entity_versions(events))


def _one_version_each(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first event of each entity: with retries in play, an older version retried after a
    newer one was delivered is rightly skipped as stale, and would never reach the receiver."""
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for e in events:
        family = e["event_type"].split(".", maxsplit=1)[0]
        entity = (e["tenant_id"], family, e["data"][_ID_FIELDS[family]])
        if entity not in seen:
            seen.add(entity)
            kept.append(e)
    return kept


def _publish(settings: Settings, topics: TopicMap, events: list[dict[str, Any]]) -> None:
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )


async def _wait(condition: Any, within: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(interval)
    return bool(condition())


def _applied(receiver: ReceiverServer, tenants: list[str]) -> Counter[str]:
    """Webhook ids answered 2xx, across tenants, with how often each was received so."""
    counts: Counter[str] = Counter()
    for tenant in tenants:
        counts.update(receiver.state.count_by_id(tenant, delivered_only=True))
    return counts


async def test_ten_thousand_events_for_twenty_tenants_are_delivered_exactly_once(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    delivery_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    tenants = [f"t_{i:03d}" for i in range(20)]
    await _connect(repository, settings, receiver, tenants)
    events = sample_events(tenants, 10_000, seed=41)
    versions = _entity_versions(events)
    expected = set(versions)
    assert len(expected) == 10_000
    _publish(settings, topics, events)
    start_worker(worker_factory, delivery_env, tmp_path)

    # Every key ends delivered, or skipped as stale: on a busy machine a full lane defers a
    # record to the retry topic, a newer version of its entity can overtake it, and the older
    # one is then rightly skipped when it comes back.
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)
    records = reader.wait_until(
        lambda rs: len(_settled(rs)) >= len(expected), timeout=300, settle=2.0
    )
    reader.close()
    settled = _settled(records)
    assert set(settled) == expected, f"settled {len(settled)} of {len(expected)}"
    delivered = {key for key, status in settled.items() if status == "delivered"}
    skipped = set(settled) - delivered
    applied = _applied(receiver, tenants)
    assert set(applied) == delivered, "the receiver has exactly the keys recorded delivered"
    assert max(applied.values()) == 1, "an idempotency key was delivered twice"
    newest: dict[tuple[str, ...], int] = {}
    for entity, version in versions.values():
        newest[entity] = max(newest.get(entity, -1), version)
    newest_delivered: dict[tuple[str, ...], int] = {}
    for key in delivered:
        entity, version = versions[key]
        newest_delivered[entity] = max(newest_delivered.get(entity, -1), version)
    assert newest_delivered == newest, "every entity's newest version is delivered"
    for key in skipped:
        entity, version = versions[key]
        assert version < newest[entity], f"{key} was skipped without a newer version delivered"
    statuses = Counter(json.loads(r.value or b"{}")["status"] for r in records)
    assert statuses["delivered"] == len(delivered), "a key was recorded delivered twice"
    assert set(statuses) <= {"delivered", "deferred", "stale_skipped"}, statuses

    received_at: list[float] = []
    for tenant in tenants:
        for delivery in receiver.received(tenant):
            assert delivery.signature_valid, delivery.signature_error
            assert delivery.webhook_id is not None
            assert delivery.type in {e["event_type"] for e in events}
            data = delivery.data
            assert isinstance(data, dict)
            for field in ("event_type", "schema_version", "occurred_at", "idempotency_key"):
                assert data[field], field
            assert data["idempotency_key"] == delivery.webhook_id
            assert data["tenant_id"] == tenant
            received_at.append(delivery.received_at)
    span = max(received_at) - min(received_at)
    print(f"delivered {len(delivered)} in {span:.1f}s, {len(skipped)} skipped as stale")


def _settled(raw: list[Any]) -> dict[str, str]:
    """Idempotency key -> its final status (``delivered`` wins over ``stale_skipped``)."""
    settled: dict[str, str] = {}
    for r in raw:
        record = json.loads(r.value or b"{}")
        if record["status"] == "delivered":
            settled[record["idempotency_key"]] = "delivered"
        elif record["status"] == "stale_skipped":
            settled.setdefault(record["idempotency_key"], "stale_skipped")
    return settled


def _delivered_keys(raw: list[Any]) -> set[str]:
    decoded = (json.loads(r.value or b"{}") for r in raw)
    return {d["idempotency_key"] for d in decoded if d["status"] == "delivered"}


def _dead_letters(settings: Settings, topics: TopicMap, count: int) -> list[Any]:
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.dlq("webhook")], PARTITIONS)
    records = reader.wait_until(lambda rs: len(rs) >= count, timeout=60, settle=1.0)
    reader.close()
    return records


def _delivery_records(settings: Settings, topics: TopicMap, minimum: int) -> list[dict[str, Any]]:
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)
    records = reader.wait_until(lambda rs: len(rs) >= minimum, timeout=60, settle=1.0)
    reader.close()
    return [json.loads(r.value or b"{}") for r in records]


async def test_unavailable_receiver_gets_everything_after_recovery_honouring_retry_after(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    delivery_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    tenants = ["t_flaky", "t_steady"]
    await _connect(repository, settings, receiver, tenants)
    # Unavailable for its first 10 requests whenever they come (a worker starting slowly on a
    # busy machine may first call after the 6 s window), and for 6 s from now.
    receiver.set_behaviour(
        "t_flaky",
        Behaviour(fail_status=503, fail_first_n=10, fail_for_seconds=6.0, retry_after=1.5),
    )
    events = _one_version_each(sample_events(tenants, 400, seed=43))
    expected = _expected_keys(events)
    _publish(settings, topics, events)
    start_worker(worker_factory, delivery_env, tmp_path)
    assert await _wait(lambda: len(_applied(receiver, tenants)) >= len(expected), within=120)
    applied = _applied(receiver, tenants)
    assert set(applied) == expected
    assert max(applied.values()) == 1

    attempts: dict[str, list[Any]] = {}
    for delivery in receiver.received("t_flaky"):
        assert delivery.webhook_id is not None
        attempts.setdefault(delivery.webhook_id, []).append(delivery)
    retried = [sorted(a, key=lambda d: d.received_at) for a in attempts.values() if len(a) > 1]
    assert retried, "the flaky receiver's records were retried"
    gaps = []
    for history in retried:
        for before, after in itertools.pairwise(history):
            if before.status == 503:
                gaps.append(after.received_at - (before.answered_at or before.received_at))
    assert min(gaps) >= 1.5 - 0.05, f"Retry-After undercut: {min(gaps):.3f}s"
    print(f"{len(retried)} records retried; shortest gap after a 503: {min(gaps):.2f}s")

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    raw_records = reader.wait_until(
        lambda rs: len(_delivered_keys(rs)) >= len(expected), timeout=60, settle=1.0
    )
    reader.close()
    records = [json.loads(r.value or b"{}") for r in raw_records]
    flaky = [r for r in records if r["tenant_id"] == "t_flaky"]
    scheduled = [r for r in flaky if r["status"] == "retry_scheduled"]
    assert scheduled
    assert all(r["last_error"]["status_code"] == 503 for r in scheduled)
    assert all(r["last_error"]["retry_after_s"] == 1.5 for r in scheduled)
    # The healthy tenant is never failed or retried for the flaky one's sake. A record of
    # its may be deferred (its lane full while the flaky lane's retries are in flight on a
    # busy machine): a deferral spends no attempt, and the record is delivered after it.
    steady = [r for r in records if r["tenant_id"] == "t_steady"]
    assert {r["status"] for r in steady} <= {"delivered", "deferred"}
    delivered = {r["idempotency_key"] for r in steady if r["status"] == "delivered"}
    assert {r["idempotency_key"] for r in steady} == delivered
    assert all(r["attempt"] <= 1 for r in steady)


async def test_receiver_answering_400_dead_letters_at_once_with_the_reason(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    delivery_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    tenants = ["t_rejecting"]
    await _connect(repository, settings, receiver, tenants)
    receiver.set_behaviour("t_rejecting", Behaviour(status=400))
    events = sample_events(tenants, 30, seed=44)
    _publish(settings, topics, events)
    start_worker(worker_factory, delivery_env, tmp_path)
    dead = _dead_letters(settings, topics, len(events))
    assert len(dead) == len(events)
    for record in dead:
        assert record.header("qi.error.status") == "400"
        assert record.header("qi.error.class") == "PermanentError"
        assert record.header("qi.attempt") == "1"
        assert record.header("qi.original.topic") == topics.exports("webhook")
        history = json.loads(record.header("qi.errors"))
        assert [h["status_code"] for h in history] == [400]
        assert record.value, "the contract is kept for redrive"
    counts = receiver.state.count_by_id("t_rejecting")
    assert len(counts) == len(events)
    assert set(counts.values()) == {1}, "a permanent failure is not retried"


def _delivered_ids(receiver: ReceiverServer, tenants: list[str]) -> set[str]:
    """Event ids answered 2xx at the given tenants' endpoints."""
    ids = set()
    for tenant in tenants:
        for delivery in receiver.received(tenant):
            event_id = delivery.data.get("event_id") if isinstance(delivery.data, dict) else None
            if delivery.delivered and isinstance(event_id, str):
                ids.add(event_id)
    return ids


async def test_one_tenants_hanging_or_throttled_endpoint_does_not_stop_the_others(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    delivery_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    """While one endpoint hangs or throttles, every other tenant's delivery arrives, once.

    How much the faulty tenant costs the others in latency is measured by
    ``bench/isolation.py`` (``make bench-isolation``), against a baseline of the same run.
    """
    healthy = [f"t_ok_{i:02d}" for i in range(19)]
    faulty = "t_faulty"
    tenants = [*healthy, faulty]
    await _connect(repository, settings, receiver, tenants)
    start_worker(worker_factory, delivery_env, tmp_path)
    phases = [
        ("no fault", None),
        ("hanging endpoint", Behaviour(delay_seconds=60.0)),
        ("throttled endpoint", Behaviour(rate_limit_per_second=2.0, retry_after=1.0)),
    ]
    expected: set[str] = set()
    for seed, (name, behaviour) in enumerate(phases, start=51):
        receiver.set_behaviour(faulty, behaviour)
        events = sample_events(tenants, 1000, seed=seed, version_offset=seed * 1000)
        _publish(settings, topics, events)
        wanted = {e["event_id"] for e in events if e["tenant_id"] != faulty}
        expected |= _expected_keys([e for e in events if e["tenant_id"] != faulty])

        def healthy_done(wanted: set[str] = wanted) -> bool:
            return wanted <= _delivered_ids(receiver, healthy)

        assert await _wait(healthy_done, within=120), name
    receiver.set_behaviour(faulty, None)
    applied = _applied(receiver, healthy)
    assert set(applied) == expected
    assert max(applied.values()) == 1, "a healthy tenant's key was delivered twice"
