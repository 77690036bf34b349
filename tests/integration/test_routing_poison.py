"""Poison records against the real broker, Redis and worker process: routing never dies on input.

Every kind of record that used to stop routing (an exception out of the agent, or a dead letter
the producer refused forever) is interleaved with valid events of several tenants. The worker
must export every valid event exactly once, dead-letter every poison record with its reason,
and do it in one process, its routing agent never crashing or restarting.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from processors.kafka import admin_client, producer
from processors.routing.idempotency import idempotency_key
from processors.samples import sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import ConsumedRecord, TopicReader
from tests.support.worker import WorkerProcess

POISON_TENANT = "t_poison"
TENANTS = ("t_one", "t_two", "t_three", POISON_TENANT)
CONNECTIONS = {
    "t_one": ("webhook",),
    "t_two": ("webhook", "hubspot"),
    "t_three": ("webhook",),
    POISON_TENANT: ("webhook",),
}
_ID_FIELDS = {"company": "company_id", "person": "person_id", "signal": "signal_id"}
_ID_FIELDS["job_ad"] = "job_ad_id"
MAX_DATE = "9999-12-31T23:59:59-01:00"
DLQ_MAX_MESSAGE_BYTES = 20_000
"""The dead-letter topic's ``max.message.bytes`` in this test: lower than a dead letter that
copies a 40 KB record, so the broker refuses that one."""


@pytest.fixture
def owned_topics(settings: Settings, topics: TopicMap) -> Iterator[TopicMap]:
    """The test's topics, deleted (with any the worker added under the prefix) at its end."""
    yield topics
    admin = admin_client(settings.kafka)
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(topics.prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def _poison_tenant_event(event_type: str, seed: int) -> dict[str, Any]:
    kinds = {"company.upserted": 0, "person.upserted": 1, "signal.emitted": 2}
    kinds["job_ad.published"] = 3
    return sample_events([POISON_TENANT], 4, seed=seed)[kinds[event_type]]


def _poison() -> list[tuple[str, bytes | None, bytes]]:
    """(expected reason, key, value) of one record of each kind that used to stop routing."""
    key = POISON_TENANT.encode()
    records: list[tuple[str, bytes | None, bytes]] = []

    huge = to_json_line(_poison_tenant_event("company.upserted", 51)).decode().rstrip("\n")
    huge = huge[:-1] + ', "extra": [' + "9" * 4_400 + "]}"
    records.append(("unparseable", key, huge.encode()))

    document = _poison_tenant_event("company.upserted", 52)
    document["schema_version"] = "1" * 5_000 + ".0"
    records.append(("validation_failed", key, to_json_line(document)))

    document = _poison_tenant_event("person.upserted", 53)
    document["occurred_at"] = MAX_DATE
    records.append(("validation_failed", key, to_json_line(document)))

    document = _poison_tenant_event("signal.emitted", 54)
    document["data"]["detected_at"] = MAX_DATE
    records.append(("validation_failed", key, to_json_line(document)))

    document = _poison_tenant_event("job_ad.published", 55)
    document["data"]["posted_at"] = MAX_DATE
    records.append(("validation_failed", key, to_json_line(document)))

    document = _poison_tenant_event("company.upserted", 56)
    document["data"]["version"] = 2**63
    records.append(("validation_failed", key, to_json_line(document)))

    document = _poison_tenant_event("company.upserted", 57)
    document["tenant_id"] = "t_\ud800"
    records.append(("key_mismatch", key, json.dumps(document).encode()))

    # Near 1 MB: its dead letter, with the whole record copied, is over the producer's limit.
    padded = to_json_line(_poison_tenant_event("company.upserted", 58))
    records.append(("oversized", key, padded + b" " * (1_000_000 - len(padded))))

    # 40 KB that does not compress: its dead letter is over this test's dead-letter topic limit.
    records.append(("unparseable", key, os.urandom(40_000)))
    return records


def _expected_keys(events: list[dict[str, Any]]) -> Counter[str]:
    expected: Counter[str] = Counter()
    for document in events:
        tenant = document["tenant_id"]
        event_type = document["event_type"]
        data = document["data"]
        for connector in CONNECTIONS[tenant]:
            expected[
                idempotency_key(
                    tenant_id=tenant,
                    connector=connector,
                    connection_id=f"conn_{tenant}_{connector}",
                    event_type=event_type,
                    entity_id=data[_ID_FIELDS[event_type.split(".")[0]]],
                    entity_version=data["version"],
                )
            ] += 1
    return expected


def _limit_dead_letter_topic(settings: Settings, topics: TopicMap) -> None:
    resource = ConfigResource(
        ResourceType.TOPIC,
        topics.invalid_events,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                str(DLQ_MAX_MESSAGE_BYTES),
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    admin = admin_client(settings.kafka)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


async def test_poison_records_are_dead_lettered_and_every_valid_event_exported_once(
    settings: Settings,
    owned_topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    topics = owned_topics
    for tenant, connectors in CONNECTIONS.items():
        await repository.allow(tenant)
        for connector in connectors:
            await repository.put(
                ConnectionRecord.model_validate(
                    {
                        "tenant_id": tenant,
                        "connector": connector,
                        "connection_id": f"conn_{tenant}_{connector}",
                    }
                )
            )
    _limit_dead_letter_topic(settings, topics)
    valid = sample_events(TENANTS, 400, seed=71)
    poison = _poison()
    records: list[tuple[bytes | None, bytes]] = []
    step = len(valid) // (len(poison) + 1)
    for index, document in enumerate(valid):
        records.append((document["tenant_id"].encode(), to_json_line(document)))
        if index % step == step - 1 and index // step < len(poison):
            _reason, key, value = poison[index // step]
            records.append((key, value))
    assert sum(1 for _k, v in records if v in {p[2] for p in poison}) == len(poison)
    client = producer(settings.kafka, **{"message.max.bytes": 1_048_576})
    for key, value in records:
        client.produce(topics.domain_events, value=value, key=key)
        client.poll(0)
    assert client.flush(60) == 0

    worker = start_worker(worker_factory, qi_env, tmp_path)
    expected = _expected_keys(valid)
    export_topics = [topics.exports(c.value) for c in Connector]
    exports_reader = TopicReader(settings.kafka.bootstrap_servers, export_topics, PARTITIONS)
    dlq_reader = TopicReader(settings.kafka.bootstrap_servers, [topics.invalid_events], PARTITIONS)
    dead = dlq_reader.wait_until(lambda rs: len(rs) >= len(poison), timeout=120)
    exports = exports_reader.wait_until(
        lambda rs: len(rs) >= sum(expected.values()), timeout=120, settle=5.0
    )
    dead = dlq_reader.wait_until(lambda rs: True, timeout=1, settle=2.0)
    exports_reader.close()
    dlq_reader.close()

    keys = Counter(r.header("qi.idempotency_key") for r in exports)
    missing, extra = expected - keys, keys - expected
    assert not missing, f"{sum(missing.values())} valid exports missing"
    assert not extra, f"{sum(extra.values())} exports more than once or unexpected"

    assert Counter(r.header("qi.error.reason") for r in dead) == Counter(p[0] for p in poison)
    _check_dead_letters(dead, poison, topics)

    assert worker.running, "the worker process is the one started, still running"
    log = worker.log_path.read_text(errors="replace")
    assert "Crashed reason" not in log, "the routing agent crashed"
    assert "routing.record.too_large" in log, "the broker refused the 40 KB dead letter"


def _check_dead_letters(
    dead: list[ConsumedRecord], poison: list[tuple[str, bytes | None, bytes]], topics: TopicMap
) -> None:
    """One dead letter per poison record, with its reason, and its payload when it fits."""
    unmatched = list(dead)
    for reason, _key, value in poison:
        omitted = len(value) in {1_000_000, 40_000}
        matches = [
            r
            for r in unmatched
            if (
                r.value == value
                if not omitted
                else r.header("qi.original.value_bytes") == str(len(value))
            )
        ]
        assert len(matches) == 1, f"one dead letter for the {reason} record of {len(value)} bytes"
        record = matches[0]
        unmatched.remove(record)
        assert record.header("qi.error.reason") == reason
        assert record.header("qi.original.topic") == topics.domain_events
        assert record.header("qi.original.value_bytes") == str(len(value))
        assert record.header("qi.error.detail")
        if len(value) == 1_000_000:
            assert record.value in {None, b""}
            assert record.header("qi.payload_omitted") == "too_large"
        elif len(value) == 40_000:
            assert record.value in {None, b""}
            assert record.header("qi.payload_omitted") == "refused_too_large"
        else:
            assert record.header("qi.payload_included") == "true", "kept for redrive"
    assert not unmatched
