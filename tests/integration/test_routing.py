"""The routing agent against the real broker and Redis, run as the real worker process."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from processors.contracts import decode, default_registry
from processors.routing.idempotency import idempotency_key
from processors.routing.parsing import parse_domain_event
from processors.samples import invalid_samples, sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

TENANTS = ("t_alpha", "t_bravo", "t_charlie", "t_delta", "t_echo")
ALLOWLISTED = ("t_alpha", "t_bravo", "t_charlie", "t_echo")
_ID_FIELDS = {
    "company": "company_id",
    "person": "person_id",
    "signal": "signal_id",
    "job_ad": "job_ad_id",
}


def _connections() -> list[ConnectionRecord]:
    def conn(tenant: str, connector: str, **extra: Any) -> ConnectionRecord:
        return ConnectionRecord.model_validate(
            {
                "tenant_id": tenant,
                "connector": connector,
                "connection_id": f"conn_{tenant}_{connector}",
                **extra,
            }
        )

    return [
        conn("t_alpha", "webhook"),
        conn("t_alpha", "hubspot", event_types={"job_ad.published": False}),
        conn("t_bravo", "webhook", export_non_strict_signals=False),
        conn("t_charlie", "pipedrive", enabled=False),
        conn("t_charlie", "webhook", event_types={"person.deleted": False}),
        conn("t_delta", "webhook"),  # not on the allowlist: nothing is exported
        # t_echo is allowlisted but has no connection
    ]


async def _seed(repository: ConnectionRepository) -> list[ConnectionRecord]:
    connections = _connections()
    for tenant in ALLOWLISTED:
        await repository.allow(tenant)
    for connection in connections:
        await repository.put(connection)
    return connections


def _expected_keys(
    events: list[dict[str, Any]], connections: list[ConnectionRecord]
) -> Counter[str]:
    """Computed from the connection rules, independently of the routing service."""
    expected: Counter[str] = Counter()
    for document in events:
        tenant = document["tenant_id"]
        if tenant not in ALLOWLISTED:
            continue
        data = document["data"]
        entity_id = next(
            v
            for k, v in data.items()
            if (k.endswith("_id") and k != "company_id")
            or (k == "company_id" and document["event_type"].startswith("company"))
        )
        for connection in connections:
            if connection.tenant_id != tenant or not connection.enabled:
                continue
            if not connection.event_types.get(document["event_type"], True):
                continue
            if data.get("contract_mode") in {"informational", "legacy"} and not (
                connection.export_non_strict_signals
            ):
                continue
            expected[
                idempotency_key(
                    tenant_id=tenant,
                    connector=connection.connector.value,
                    connection_id=connection.connection_id,
                    event_type=document["event_type"],
                    entity_id=entity_id,
                    entity_version=data["version"],
                )
            ] += 1
    return expected


def _export_topics(topics: TopicMap) -> list[str]:
    return [topics.exports(c.value) for c in Connector]


async def test_events_for_many_tenants_give_exactly_the_expected_exports(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    connections = await _seed(repository)
    events = sample_events(TENANTS, 2000, seed=11)
    expected = _expected_keys(events, connections)
    assert sum(expected.values()) > 1400
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )
    start_worker(worker_factory, qi_env, tmp_path)
    reader = TopicReader(settings.kafka.bootstrap_servers, _export_topics(topics), PARTITIONS)
    records = reader.wait_until(
        lambda rs: len(rs) >= sum(expected.values()), timeout=120, settle=3.0
    )
    reader.close()

    keys = Counter(r.header("qi.idempotency_key") for r in records)
    assert keys == expected, f"missing {len(expected - keys)}, unexpected {len(keys - expected)}"

    inputs = TopicReader(settings.kafka.bootstrap_servers, [topics.domain_events], PARTITIONS)
    input_records = inputs.wait_until(lambda rs: len(rs) >= len(events), timeout=30)
    inputs.close()
    tenant_partition = {r.key: r.partition for r in input_records}
    for record in records:
        assert record.key is not None
        assert record.partition == tenant_partition[record.key], (
            "export left its tenant's partition"
        )
        assert record.topic == topics.exports(record.header("qi.connector"))
        assert record.value is not None
        _schema, contract = decode(record.value, registry=default_registry())
        assert contract["idempotency_key"] == record.header("qi.idempotency_key")
        assert contract["tenant_id"] == record.key.decode() == record.header("qi.tenant_id")
        assert contract["connection_id"] == record.header("qi.connection_id")
        assert contract["correlation_id"] == record.header("qi.correlation_id")
        assert contract["event_type"] == record.header("qi.event_type")

    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{qi_env['QI_METRICS_PORT']}/metrics")
    metrics = response.text
    assert f"qi_events_consumed_total {float(len(events))}" in metrics
    produced = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("qi_exports_produced_total{")
    )
    assert produced == sum(expected.values())


def _invalid_inputs(topics: TopicMap) -> tuple[list[tuple[bytes | None, bytes]], Counter[str]]:
    records: list[tuple[bytes | None, bytes]] = []
    reasons: Counter[str] = Counter()
    for sample in invalid_samples("t_alpha", max_event_bytes=64 * 1024):
        try:
            document = json.loads(sample.line)
        except ValueError:
            document = None
        tenant = document.get("tenant_id") if isinstance(document, dict) else None
        records.append((tenant.encode() if isinstance(tenant, str) else None, sample.line))
        reasons[sample.reason] += 1
    forged = sample_events(["t_bravo"], 1, seed=3)[0]
    records.append((b"t_alpha", to_json_line(forged)))  # keyed for one tenant, claims another
    reasons["key_mismatch"] += 1
    records.append((b"t_alpha", b""))
    reasons["empty"] += 1
    return records, reasons


async def test_invalid_events_are_dead_lettered_with_reasons_and_the_stream_goes_on(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await _seed(repository)
    good_before = sample_events(["t_alpha"], 20, seed=21)
    good_after = sample_events(["t_alpha"], 20, seed=22)
    bad, reasons = _invalid_inputs(topics)
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        [(b"t_alpha", to_json_line(e)) for e in good_before]
        + bad
        + [(b"t_alpha", to_json_line(e)) for e in good_after],
    )
    start_worker(worker_factory, qi_env, tmp_path)
    dlq = TopicReader(settings.kafka.bootstrap_servers, [topics.invalid_events], PARTITIONS)
    dead = dlq.wait_until(lambda rs: len(rs) >= len(bad), timeout=90, settle=2.0)
    dlq.close()
    assert Counter(r.header("qi.error.reason") for r in dead) == reasons
    for record in dead:
        assert record.header("qi.original.topic") == topics.domain_events
        assert int(record.header("qi.original.offset")) >= 0
        assert record.header("qi.error.detail")
        assert record.header("qi.payload_included") in {"true", "false"}
    assert {r.value for r in dead} == {value for _key, value in bad}, "payloads kept for redrive"

    exports = TopicReader(settings.kafka.bootstrap_servers, _export_topics(topics), PARTITIONS)
    valid = [
        parse_domain_event(b"t_alpha", to_json_line(e), max_bytes=1 << 20)
        for e in good_before + good_after
    ]
    wanted = 2 * len(valid) - sum(1 for e in valid if e.envelope.event_type == "job_ad.published")
    records = exports.wait_until(lambda rs: len(rs) >= wanted, timeout=60, settle=2.0)
    exports.close()
    assert len(records) == wanted, "valid events before and after the bad ones all routed"


async def test_worker_killed_mid_stream_loses_nothing(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    connections = await _seed(repository)
    events = sample_events(TENANTS, 10_000, seed=31)
    expected = _expected_keys(events, connections)
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )
    reader = TopicReader(settings.kafka.bootstrap_servers, _export_topics(topics), PARTITIONS)
    first = start_worker(worker_factory, qi_env, tmp_path)
    reader.wait_until(lambda rs: len(rs) >= 4000, timeout=120)
    assert first.running
    seen_at_kill = len(reader.records)
    first.kill()
    assert seen_at_kill < sum(expected.values()), "the kill came mid-stream"

    start_worker(worker_factory, qi_env, tmp_path)

    def complete(records: list[ConsumedRecord]) -> bool:
        return len({r.header("qi.idempotency_key") for r in records}) >= len(expected)

    records = reader.wait_until(complete, timeout=180, settle=3.0)
    reader.close()
    keys = Counter(r.header("qi.idempotency_key") for r in records)
    missing = set(expected) - set(keys)
    assert not missing, f"{len(missing)} exports lost"
    assert not set(keys) - set(expected)
    duplicates = sum(keys.values()) - len(keys)
    # At-least-once: records after the last commit are routed again, with the same keys and
    # delivery ids, so destinations recognise them.
    by_key: dict[str, set[str]] = {}
    for record in records:
        by_key.setdefault(record.header("qi.idempotency_key"), set()).add(
            record.header("qi.delivery_id")
        )
    assert all(len(ids) == 1 for ids in by_key.values())
    print(f"kill at {seen_at_kill} exports; {duplicates} re-routed duplicates after restart")
