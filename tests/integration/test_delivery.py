"""The whole outbound path to signed webhooks: real worker, Kafka, Redis and HTTP receiver."""

from __future__ import annotations

import asyncio
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
from tests.sandboxes.webhook_receiver import ReceiverServer, generate_secret
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


def _expected_keys(events: list[dict[str, Any]]) -> set[str]:
    return {
        idempotency_key(
            tenant_id=e["tenant_id"],
            connector="webhook",
            connection_id=f"conn_{e['tenant_id']}",
            event_type=e["event_type"],
            entity_id=e["data"][_ID_FIELDS[e["event_type"].split(".", maxsplit=1)[0]]],
            entity_version=e["data"]["version"],
        )
        for e in events
    }


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
    expected = _expected_keys(events)
    assert len(expected) == 10_000
    _publish(settings, topics, events)
    start_worker(worker_factory, delivery_env, tmp_path)
    assert await _wait(lambda: len(_applied(receiver, tenants)) >= len(expected), within=300), (
        f"delivered {len(_applied(receiver, tenants))} of {len(expected)}"
    )
    await asyncio.sleep(2)  # anything sent twice would show up now
    applied = _applied(receiver, tenants)
    assert set(applied) == expected
    assert max(applied.values()) == 1, "an idempotency key was delivered twice"
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
    print(f"delivered {len(expected)} in {span:.1f}s: {len(expected) / span:.0f}/s")

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)
    records = reader.wait_until(lambda rs: len(rs) >= len(expected), timeout=60)
    reader.close()
    statuses = Counter(json.loads(r.value or b"{}")["status"] for r in records)
    assert statuses["delivered"] == len(expected)
