"""Dead letters end to end: a receiver answering 400 dead-letters a tenant's records; after it
is fixed, ``dlq redrive`` delivers each exactly once, and a second redrive sends nothing.

Real worker process, Kafka, Redis and webhook receiver (the setup of ``test_delivery``).
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.cli import main
from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.kafka import producer
from processors.operations.deadletters import DeadLetterFilter, DeadLetterService
from processors.routing.idempotency import delivery_id_for
from processors.samples import sample_events, to_json_line
from processors.settings import Settings, get_settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.test_delivery import (
    _connect,
    _expected_keys,
    _one_version_each,
    _publish,
    _wait,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.kafka_io import TopicReader, produce, read_to_end
from tests.support.worker import WorkerProcess

REJECTED = "t_rejected"
STEADY = "t_steady"
FAST = {
    "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "2",
    "QI_DELIVERY_DEFER_MIN_SECONDS": "0.5",
    "QI_DELIVERY_DEFER_MAX_SECONDS": "2",
}


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


@pytest.fixture
def cli_env(qi_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI in this process reads the test's topics and keys (its settings are cached)."""
    for name, value in qi_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Records:
    """Delivery records of the test, read as they come."""

    def __init__(self, settings: Settings, topics: TopicMap) -> None:
        self._reader = TopicReader(
            settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS
        )

    def wait(self, done: Any, timeout: float = 90) -> list[dict[str, Any]]:
        def decoded_done(raw: list[Any]) -> bool:
            return bool(done([json.loads(r.value or b"{}") for r in raw]))

        raw = self._reader.wait_until(decoded_done, timeout=timeout, settle=1.0)
        return [json.loads(r.value or b"{}") for r in raw]

    def close(self) -> None:
        self._reader.close()


def _keys(records: list[dict[str, Any]], status: str, replay_id: str | None = None) -> set[str]:
    return {
        r["idempotency_key"]
        for r in records
        if r["status"] == status and (replay_id is None or r["replay_id"] == replay_id)
    }


def _last_json(out: str) -> dict[str, Any]:
    parsed = json.loads(out.strip().splitlines()[-1])
    assert isinstance(parsed, dict)
    return parsed


async def _dead_lettered_then_fixed(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    receiver: ReceiverServer,
    env: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
    records: Records,
) -> tuple[set[str], set[str]]:
    """Publish for both tenants with the rejected one's receiver answering 400, wait until its
    records are all dead-lettered and the steady one's delivered, then fix the receiver."""
    await _connect(repository, settings, receiver, [REJECTED, STEADY])
    receiver.set_behaviour(REJECTED, Behaviour(status=400))
    events = _one_version_each(sample_events([REJECTED, STEADY], 60, seed=91))
    rejected = _expected_keys([e for e in events if e["tenant_id"] == REJECTED])
    steady = _expected_keys([e for e in events if e["tenant_id"] == STEADY])
    assert rejected
    assert steady
    _publish(settings, topics, events)
    start_worker(workers, env, tmp_path)
    seen = records.wait(
        lambda rs: _keys(rs, "dead_lettered") >= rejected and _keys(rs, "delivered") >= steady
    )
    assert _keys(seen, "dead_lettered") == rejected, "only the rejected tenant's records"
    assert _keys(seen, "delivered") == steady
    receiver.set_behaviour(REJECTED, None)  # fixed: answers 200 from now on
    return rejected, steady


async def test_redrive_delivers_each_dead_letter_once_and_a_second_redrive_sends_nothing(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = Records(settings, topics)
    try:
        rejected, _steady = await _dead_lettered_then_fixed(
            settings,
            topics,
            repository,
            receiver,
            {**qi_env, **FAST},
            worker_factory,
            tmp_path,
            records,
        )
        assert not receiver.delivered_ids(REJECTED)

        # The operator's view: one row per dead letter, the error and the key, no payload.
        listing = ["dlq", "list", "--tenant", REJECTED, "--connector", "webhook", "--json"]
        assert main(listing) == 0
        page = _last_json(capsys.readouterr().out)
        assert {row["idempotency_key"] for row in page["items"]} == rejected
        assert page["next_cursor"] is None
        for row in page["items"]:
            assert (row["error_class"], row["status_code"], row["attempts"]) == (
                "PermanentError",
                400,
                1,
            )
            assert row["payload_included"] is True
            assert row["first_attempt_at"] is not None
            assert "value" not in row
        assert main([*listing[:-1], "--error", "RetryBudgetSpent", "--json"]) == 0
        assert _last_json(capsys.readouterr().out)["items"] == []
        assert main(["dlq", "list", "--tenant", STEADY, "--connector", "webhook", "--json"]) == 0
        assert _last_json(capsys.readouterr().out)["items"] == [], "the other tenant has none"

        dry = ["dlq", "redrive", "--tenant", REJECTED, "--connector", "webhook", "--dry-run"]
        assert main([*dry, "--json"]) == 0
        summary = _last_json(capsys.readouterr().out)
        assert (summary["matched"], summary["queued"], summary["dry_run"]) == (
            len(rejected),
            0,
            True,
        )

        redrive = ["dlq", "redrive", "--tenant", REJECTED, "--connector", "webhook", "--json"]
        assert main(redrive) == 0
        first = _last_json(capsys.readouterr().out)
        assert (first["matched"], first["queued"], first["dry_run"]) == (
            len(rejected),
            len(rejected),
            False,
        )
        assert first["unrecoverable"] == 0
        seen = records.wait(lambda rs: _keys(rs, "delivered", first["redrive_id"]) >= rejected)
        assert _keys(seen, "delivered", first["redrive_id"]) == rejected
        delivered = receiver.count_by_id(REJECTED, delivered_only=True)
        assert set(delivered) == rejected
        assert set(delivered.values()) == {1}, "each dead letter delivered exactly once"
        assert set(receiver.count_by_id(STEADY, delivered_only=True).values()) == {1}

        assert main(redrive) == 0
        second = _last_json(capsys.readouterr().out)
        assert second["redrive_id"] != first["redrive_id"]
        assert second["matched"] == len(rejected)
        seen = records.wait(
            lambda rs: _keys(rs, "duplicate_skipped", second["redrive_id"]) >= rejected
        )
        assert _keys(seen, "duplicate_skipped", second["redrive_id"]) == rejected
        assert not _keys(seen, "delivered", second["redrive_id"]), "nothing sent twice"
        assert receiver.count_by_id(REJECTED, delivered_only=True) == delivered
        assert set(receiver.count_by_id(STEADY, delivered_only=True).values()) == {1}
    finally:
        records.close()


async def test_dead_letters_without_payloads_are_redriven_from_their_export(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    env = {**qi_env, **FAST, "QI_DELIVERY_DLQ_INCLUDE_PAYLOAD": "false"}
    records = Records(settings, topics)
    try:
        rejected, _steady = await _dead_lettered_then_fixed(
            settings, topics, repository, receiver, env, worker_factory, tmp_path, records
        )
        service = DeadLetterService(settings.kafka, topics)
        chosen = DeadLetterFilter(REJECTED, "webhook")
        page = service.listing(chosen, limit=500)
        assert len(page.rows) == len(rejected)
        assert not any(row.payload_included for row in page.rows), "payloads were off"

        report = service.redrive(chosen, dry_run=False)
        assert (report.matched, report.queued, report.from_original) == (
            len(rejected),
            len(rejected),
            len(rejected),
        )
        assert report.unrecoverable == []
        seen = records.wait(lambda rs: _keys(rs, "delivered", report.redrive_id) >= rejected)
        assert _keys(seen, "delivered", report.redrive_id) == rejected
        assert await _wait(
            lambda: set(receiver.count_by_id(REJECTED, delivered_only=True)) == rejected, 30
        )
        for delivery in receiver.received(REJECTED):
            if delivery.delivered:
                assert delivery.signature_valid
                assert isinstance(delivery.data, dict)
                assert delivery.data["idempotency_key"] == delivery.webhook_id
        assert set(receiver.count_by_id(REJECTED, delivered_only=True).values()) == {1}
    finally:
        records.close()


def _no_payload_letter(tenant: str, n: int, original: tuple[str, int]) -> list[tuple[str, Any]]:
    key = f"qik_{tenant}_{n}"
    headers = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
    headers.update(
        {
            "qi.tenant_id": tenant,
            "qi.connector": "webhook",
            "qi.entity_version": "1",
            "qi.idempotency_key": key,
            "qi.delivery_id": delivery_id_for(key),
            "qi.error.class": "PermanentError",
            "qi.error.status": "400",
            "qi.original.topic": original[0],
            "qi.original.partition": "0",
            "qi.original.offset": str(original[1]),
            "qi.payload_included": "false",
        }
    )
    return list(headers.items())


def test_a_dead_letter_whose_original_is_gone_is_reported_unrecoverable(
    settings: Settings, topics: TopicMap, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = producer(settings.kafka)
    for n, original in enumerate([(topics.exports("webhook"), 10_000), (topics.domain_events, 0)]):
        client.produce(
            topics.dlq("webhook"),
            key=REJECTED.encode(),
            value=b"",
            headers=_no_payload_letter(REJECTED, n, original),
        )
    assert client.flush(30) == 0
    redrive = ["dlq", "redrive", "--tenant", REJECTED, "--connector", "webhook", "--json"]
    assert main([*redrive, "--dry-run"]) == 0, "a dry run reports, it does not fail"
    capsys.readouterr()
    assert main(redrive) == 1
    captured = capsys.readouterr()
    summary = _last_json(captured.out)
    assert (summary["matched"], summary["queued"], summary["unrecoverable"]) == (2, 0, 2)
    assert f"qik_{REJECTED}_0" in captured.err
    assert "is gone" in captured.err
    assert "not on an export or retry topic" in captured.err
    retry = read_to_end(settings.kafka.bootstrap_servers, [topics.retry("webhook")], PARTITIONS)
    assert retry == [], "nothing is sent for an unrecoverable dead letter"


async def test_invalid_input_is_listed_exported_fixed_and_republished(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With payloads off, the raw input is read back from the domain events to be fixed."""
    await _connect(repository, settings, receiver, [REJECTED])
    [good] = _one_version_each(sample_events([REJECTED], 1, seed=92))
    broken = [
        dict(good, schema_version="2.0"),
        dict(good, event_id="not-a-uuid", data=dict(good["data"], version=2)),
    ]
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        [(REJECTED.encode(), to_json_line(e)) for e in broken]
        + [(b"t_other", to_json_line(dict(good, tenant_id="t_other", schema_version="9.0")))],
    )
    env = {**qi_env, **FAST, "QI_ROUTING_DLQ_INCLUDE_PAYLOAD": "false"}
    start_worker(worker_factory, env, tmp_path)
    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.invalid_events], PARTITIONS)
    reader.wait_until(lambda rs: len(rs) >= 3, timeout=90, settle=1.0)
    reader.close()

    assert main(["dlq", "list", "--invalid", "--tenant", REJECTED, "--json"]) == 0
    out = capsys.readouterr().out
    listed = _last_json(out)
    assert sorted(row["reason"] for row in listed["items"]) == [
        "unsupported_schema_version",
        "validation_failed",
    ]
    assert not any(row["payload_included"] for row in listed["items"])
    assert main(["dlq", "list", "--invalid", "--json"]) == 0, "every tenant's, for operators"
    assert len(_last_json(capsys.readouterr().out)["items"]) == 3
    assert good["data"]["name"] not in out, "no payload value is listed"

    exported = tmp_path / "invalid.jsonl"
    assert main(["dlq", "export-invalid", "--tenant", REJECTED, "--out", str(exported)]) == 0
    capsys.readouterr()
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in exported.read_bytes().splitlines()]
    assert sorted(lines, key=json.dumps) == sorted(broken, key=json.dumps)

    fixed = tmp_path / "fixed.jsonl"
    repaired = [dict(e, schema_version="1.0", event_id=str(uuid.uuid4())) for e in lines]
    fixed.write_bytes(b"\n".join(to_json_line(e) for e in repaired) + b"\n")
    again = ["dlq", "republish", str(fixed), "--tenant", REJECTED, "--json"]
    assert main([*again, "--dry-run"]) == 0
    dry = _last_json(capsys.readouterr().out)
    assert (dry["matched"], dry["queued"], dry["dry_run"], dry["refused"]) == (2, 0, True, 0)
    assert main(again) == 0
    done = _last_json(capsys.readouterr().out)
    assert (done["matched"], done["queued"], done["dry_run"]) == (2, 2, False)
    expected = _expected_keys(repaired)
    assert await _wait(
        lambda: set(receiver.count_by_id(REJECTED, delivered_only=True)) == expected, 90
    ), "the fixed events are routed and delivered"
