"""An operator run reads one tenant's history and sends copies, against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.kafka import admin_client, producer
from processors.operations.history import (
    HistoryError,
    HistoryReader,
    record_headers,
    tenant_partition,
)
from processors.operations.reinject import Reinjector
from processors.routing.idempotency import delivery_id_for
from processors.settings import Settings
from processors.topics import TopicMap
from tests.support.kafka_io import TopicReader

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _headers(tenant: str, n: int) -> list[tuple[str, str | bytes | None]]:
    headers = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
    headers.update(
        {
            "qi.tenant_id": tenant,
            "qi.connector": "webhook",
            "qi.entity_version": str(n),
            "qi.idempotency_key": f"qik_{tenant}_{n}",
            "qi.delivery_id": delivery_id_for(f"qik_{tenant}_{n}"),
        }
    )
    return list(headers.items())


def _export_history(settings: Settings, topics: TopicMap) -> None:
    """Two tenants, ten artifacts each, one a minute from START (the broker keeps the time)."""
    client = producer(settings.kafka)
    for n in range(10):
        for tenant in ("t_1", "t_2"):
            client.produce(
                topics.exports("webhook"),
                key=tenant.encode(),
                value=f"{tenant}-{n}".encode(),
                headers=_headers(tenant, n),
                timestamp=int((START + timedelta(minutes=n)).timestamp() * 1000),
            )
    assert client.flush(30) == 0


def _end_offsets(settings: Settings, topic: str) -> list[int]:
    with HistoryReader(settings.kafka) as reader:
        return [reader.span(topic, partition).end for partition in range(reader.partitions(topic))]


def test_a_window_of_one_tenant_is_read_and_sent_again_without_touching_history(
    settings: Settings, topics: TopicMap
) -> None:
    _export_history(settings, topics)
    exports = topics.exports("webhook")
    before = _end_offsets(settings, exports)
    with HistoryReader(settings.kafka) as reader:
        partitions = reader.partitions(exports)
        partition = tenant_partition("t_1", partitions)
        span = reader.span(
            exports,
            partition,
            since=START + timedelta(minutes=3),
            until=START + timedelta(minutes=6),
        )
        window = [m for m in reader.read(span) if m.key() == b"t_1"]
    assert [m.value() for m in window] == [f"t_1-{n}".encode() for n in range(3, 7)]

    with Reinjector(settings.kafka, topics) as reinjector:
        for message in window:
            headers = record_headers(message)
            reinjector.queue(message.value() or b"", headers, run_id="rp_1", kind="replay")
        reinjector.flush()
        assert reinjector.queued == 4

    retry = TopicReader(settings.kafka.bootstrap_servers, [topics.retry("webhook")], partitions)
    copies = retry.wait_until(lambda rs: len(rs) >= 4, timeout=30, settle=1.0)
    retry.close()
    assert sorted(c.value or b"" for c in copies) == [f"t_1-{n}".encode() for n in range(3, 7)]
    assert {c.partition for c in copies} == {partition}, "a copy goes to its tenant's partition"
    for copy in copies:
        assert copy.headers["qi.replay_id"] == "rp_1"
        assert copy.headers["qi.run.kind"] == "replay"
        key = copy.headers["qi.idempotency_key"]
        assert copy.headers["qi.delivery_id"] == delivery_id_for(key, replay_id="rp_1")
    assert _end_offsets(settings, exports) == before, "nothing is appended to the exports"
    groups = admin_client(settings.kafka).list_consumer_groups().result(timeout=10)
    assert not [g for g in groups.valid if g.group_id.startswith("qi-history-")]


def test_spans_follow_times_and_offsets_and_refuse_nonsense(
    settings: Settings, topics: TopicMap
) -> None:
    _export_history(settings, topics)
    exports = topics.exports("webhook")
    with HistoryReader(settings.kafka) as reader:
        partition = tenant_partition("t_2", reader.partitions(exports))
        whole = reader.span(exports, partition)
        later = reader.span(exports, partition, since=START + timedelta(days=1))
        assert later.size == 0, "a window after the last record is empty"
        from_offset = reader.span(exports, partition, from_offset=whole.end - 2)
        assert from_offset.size == 2
        assert len(list(reader.read(from_offset))) == 2
        with pytest.raises(ValueError, match="time zone"):
            reader.span(exports, partition, since=datetime(2026, 1, 5, 9, 0))
        with pytest.raises(ValueError, match="before its start"):
            reader.span(exports, partition, since=START, until=START - timedelta(minutes=1))
        with pytest.raises(ValueError, match="not both"):
            reader.span(exports, partition, since=START, from_offset=0)
        with pytest.raises(HistoryError, match="does not exist"):
            reader.partitions(topics.exports("webhook") + ".missing")
