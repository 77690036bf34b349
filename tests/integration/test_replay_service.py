"""The replay service against the real broker and Redis: cancel between batches, and what a
run sends when the history holds other tenants, malformed records and duplicates (no worker:
the copies stay on the retry topic, where they are read back)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.kafka import producer
from processors.operations.history import tenant_partition
from processors.operations.replay import ReplayRequest, ReplayService
from processors.operations.runs import RunStatus
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS
from tests.support.kafka_io import read_to_end
from tests.support.leaders import end_offsets

START = datetime.now(UTC) - timedelta(minutes=30)


def _export(
    settings: Settings, topics: TopicMap, records: list[tuple[str, int, dict[str, str]]]
) -> None:
    """(record key, n, header changes) each, one a second from START."""
    client = producer(settings.kafka)
    for i, (key, n, changes) in enumerate(records):
        headers = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
        headers.update(
            {
                "qi.tenant_id": key,
                "qi.connector": "webhook",
                "qi.entity_version": "1",
                "qi.idempotency_key": f"qik_{key}_{n}",
                **changes,
            }
        )
        client.produce(
            topics.exports("webhook"),
            key=key.encode(),
            value=f"{key}-{n}".encode(),
            headers=list(headers.items()),
            timestamp=int((START + timedelta(seconds=i)).timestamp() * 1000),
        )
    assert client.flush(30) == 0


async def _service(settings: Settings, redis: Redis) -> ReplayService:
    repository = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
    await repository.put(ConnectionRecord(tenant_id="t_1", connector=Connector("webhook")))
    return ReplayService(settings, redis)


async def test_a_cancelled_replay_stops_between_batches(
    settings: Settings, topics: TopicMap, repository: ConnectionRepository
) -> None:
    await end_offsets(settings.kafka, topics.exports("webhook"))
    _export(settings, topics, [("t_1", n, {}) for n in range(1_200)])
    service = await _service(settings, repository._redis)
    run = await service.start(ReplayRequest(tenant_id="t_1", connector="webhook", since=START))
    await service.store.request_cancel(run.run_id)
    outcome = await service.execute(run)
    assert outcome.run.status is RunStatus.CANCELLED
    assert 0 < outcome.run.queued < 1_200, "it stopped after a batch"
    stored = await service.store.get(run.run_id)
    assert stored is not None
    assert stored.status is RunStatus.CANCELLED
    copies = read_to_end(settings.kafka.bootstrap_servers, [topics.retry("webhook")], PARTITIONS)
    assert len(copies) == outcome.run.queued, "every copy counted queued was sent"
    again = await service.start(ReplayRequest(tenant_id="t_1", connector="webhook", since=START))
    assert again.status is RunStatus.QUEUED, "a cancelled run frees the connection"


async def test_a_replay_sends_the_tenants_artifacts_once_and_nothing_else(
    settings: Settings, topics: TopicMap, repository: ConnectionRepository
) -> None:
    await end_offsets(settings.kafka, topics.exports("webhook"))
    history: list[tuple[str, int, dict[str, str]]] = []
    for n in range(40):
        history.append(("t_1", n, {"qi.event_type": "company.upserted"}))
        history.append(("t_2", n, {}))
    history.append(("t_1", 3, {"qi.event_type": "company.upserted"}))  # exported twice
    history.append(("t_1", 90, {"qi.tenant_id": "t_2"}))  # forged tenant header
    history.append(("t_1", 91, {"qi.event_type": "person.upserted"}))  # filtered out
    _export(settings, topics, history)
    service = await _service(settings, repository._redis)
    outcome = await service.replay(
        ReplayRequest(
            tenant_id="t_1",
            connector="webhook",
            since=START,
            event_types=("company.upserted",),
        )
    )
    run = outcome.run
    assert run.status is RunStatus.COMPLETED
    assert (run.matched, run.queued, run.duplicates, run.malformed) == (40, 40, 1, 1)
    copies = read_to_end(settings.kafka.bootstrap_servers, [topics.retry("webhook")], PARTITIONS)
    assert Counter(c.value for c in copies) == Counter(f"t_1-{n}".encode() for n in range(40))
    assert {c.partition for c in copies} == {tenant_partition("t_1", PARTITIONS)}
    assert all(c.headers["qi.replay_id"] == run.run_id for c in copies)
