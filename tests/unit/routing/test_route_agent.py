"""The routing agent's batch handling: retries, too-large records, and what it acknowledges.

The producer is a fake that behaves like aiokafka under Faust: ``send`` may raise (Faust wraps
the client's own size check in ``ProducerSendError``), and the acknowledgement of a record
fails for every record of its produce round when one of them is over the broker's limit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from redis.exceptions import ConnectionError as RedisConnectionError

from processors.agents.route import BatchRouter, route_batches
from processors.agents.streams import concrete_stream
from processors.contracts import default_registry
from processors.routing.service import IncomingRecord, OutgoingRecord, RoutingService
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.unit.routing.conftest import envelope, raw

DLQ = "p.integrations.dlq.invalid-events"


class _Connections(ConnectionRepository):
    def __init__(self, *, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        self.calls += 1
        tenants = set(tenant_ids)
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("down")
        connections = [
            ConnectionRecord.model_validate(
                {"tenant_id": t, "connector": c, "connection_id": f"c_{t}_{c}"}
            )
            for t in tenants
            for c in ("webhook", "hubspot")
        ]
        return {
            t: TenantRouting(t, True, [c for c in connections if c.tenant_id == t]) for t in tenants
        }


class _Producer:
    """Records produced per round; a round's acknowledgements fail together for a large one."""

    def __init__(self, *, client_limit: int, broker_limit: int) -> None:
        self.client_limit = client_limit
        self.broker_limit = broker_limit
        self.sends: list[OutgoingRecord] = []
        self.acknowledged: list[OutgoingRecord] = []
        self.timeouts: set[bytes] = set()
        self.refused_topics: set[str] = set()
        self._round: list[tuple[OutgoingRecord, asyncio.Future[object]]] = []

    async def send(self, record: OutgoingRecord) -> Awaitable[object]:
        self.sends.append(record)
        size = len(record.key or b"") + len(record.value)
        if size > self.client_limit:
            try:
                raise MessageSizeTooLargeError("too large for the client")
            except MessageSizeTooLargeError as exc:
                raise ProducerSendError("Error while sending") from exc
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if not self._round:
            asyncio.get_running_loop().call_soon(self._complete_round)
        self._round.append((record, future))
        return future

    def _complete_round(self) -> None:
        round_, self._round = self._round, []
        oversized = any(
            len(r.key or b"") + len(r.value) > self.broker_limit or r.topic in self.refused_topics
            for r, _future in round_
        )
        for record, future in round_:
            if oversized:
                future.set_exception(MessageSizeTooLargeError())
            elif record.value in self.timeouts:
                self.timeouts.discard(record.value)
                future.set_exception(KafkaTimeoutError())
            else:
                self.acknowledged.append(record)
                future.set_result(None)


def _service(connections: ConnectionRepository | None = None) -> RoutingService:
    return RoutingService(
        topics=TopicMap("p."),
        connections=connections or _Connections(),
        registry=default_registry(),
        settings=RoutingSettings(max_event_bytes=64 * 1024),
    )


def _batch(values: Sequence[bytes]) -> list[IncomingRecord]:
    return [
        IncomingRecord("p.queast.domain-events", 0, offset, b"t_1", value)
        for offset, value in enumerate(values)
    ]


def _router(service: RoutingService, producer: _Producer, sleeps: list[float]) -> BatchRouter:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return BatchRouter(service, producer.send, sleep=sleep)


def _reason(record: OutgoingRecord) -> str:
    return dict(record.headers)["qi.error.reason"].decode()


async def test_redis_errors_retry_the_lookup_with_backoff() -> None:
    connections = _Connections(failures=3)
    producer = _Producer(client_limit=1_000_000, broker_limit=1_000_000)
    sleeps: list[float] = []
    await _router(_service(connections), producer, sleeps).route(_batch([raw(envelope())]))
    assert connections.calls == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(producer.acknowledged) == 2


async def test_a_failed_acknowledgement_sends_only_that_record_again() -> None:
    producer = _Producer(client_limit=1_000_000, broker_limit=1_000_000)
    sleeps: list[float] = []
    router = _router(_service(), producer, sleeps)
    first = raw(envelope())
    report = await _service().route(_batch([first]))
    producer.timeouts.add(report.records[1].value)
    await router.route(_batch([first]))
    assert len(producer.sends) == 3
    assert producer.sends[2].value == report.records[1].value
    assert sorted(r.topic for r in producer.acknowledged) == sorted(r.topic for r in report.records)
    assert sleeps == [0.5]


async def test_a_dead_letter_over_the_client_limit_is_replaced_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = _Producer(client_limit=2_000, broker_limit=1_000_000)
    sleeps: list[float] = []
    poison = b"{" + b" " * 3_000
    good = raw(envelope())
    await _router(_service(), producer, sleeps).route(_batch([good, poison]))
    dead = [r for r in producer.acknowledged if r.topic == DLQ]
    assert len(dead) == 1
    assert dead[0].value == b""
    assert dict(dead[0].headers)["qi.payload_omitted"] == b"refused_too_large"
    assert _reason(dead[0]) == "unparseable"
    assert sum(1 for r in producer.acknowledged if r.topic != DLQ) == 2
    assert sleeps == [], "a too-large record is no infrastructure error"
    assert "routing.record.too_large" in caplog.messages


async def test_records_refused_with_a_large_one_are_sent_again_alone() -> None:
    producer = _Producer(client_limit=1_000_000, broker_limit=2_000)
    sleeps: list[float] = []
    poison = b"{" + b" " * 3_000
    goods = [raw(envelope()), raw(envelope("person.upserted"))]
    batch = _batch([goods[0], poison, goods[1]])
    await _router(_service(), producer, sleeps).route(batch)
    exports = [r for r in producer.acknowledged if r.topic != DLQ]
    dead = [r for r in producer.acknowledged if r.topic == DLQ]
    assert len(exports) == 4, "the valid events' exports were taken once each"
    assert len({dict(r.headers)["qi.idempotency_key"] for r in exports}) == 4
    assert len(dead) == 1
    assert dead[0].value == b""
    assert sleeps == []


async def test_an_export_refused_as_too_large_becomes_one_dead_letter_of_its_event() -> None:
    producer = _Producer(client_limit=1_000_000, broker_limit=1_000_000)
    producer.refused_topics = {"p.integrations.exports.webhook", "p.integrations.exports.hubspot"}
    sleeps: list[float] = []
    value = raw(envelope("company.upserted"))
    await _router(_service(), producer, sleeps).route(_batch([value]))
    (dead,) = producer.acknowledged
    assert dead.topic == DLQ
    assert _reason(dead) == "oversized"
    assert dead.value == value
    assert sleeps == []


async def test_a_record_no_form_of_which_is_taken_is_dropped_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = _Producer(client_limit=1_000_000, broker_limit=1_000_000)
    producer.refused_topics = {DLQ}
    sleeps: list[float] = []
    with caplog.at_level(logging.ERROR):
        await _router(_service(), producer, sleeps).route(_batch([b"{not json"]))
    assert producer.acknowledged == []
    assert len(producer.sends) == 3, "batch, alone, then the smaller dead letter alone"
    assert "routing.dead_letter.dropped" in caplog.messages


async def test_an_unexpected_producer_error_is_not_swallowed() -> None:
    async def send(record: OutgoingRecord) -> Awaitable[object]:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        await BatchRouter(_service(), send).route(_batch([raw(envelope())]))


class _Recorder:
    def __init__(self) -> None:
        self.fail = False
        self.batches: list[list[IncomingRecord]] = []

    async def route(self, batch: Sequence[IncomingRecord]) -> None:
        self.batches.append(list(batch))
        if self.fail:
            raise ZeroDivisionError


async def test_only_routed_batches_are_acknowledged() -> None:
    """With Faust's real ``take_events``: a batch whose routing raised is never committable."""
    app = faust.App("route-acks", broker="kafka://127.0.0.1:1", web_enabled=False)
    recorder = _Recorder()

    @app.agent()
    async def agent(stream: faust.StreamT[bytes]) -> None:
        await route_batches(
            concrete_stream(stream).take_events(2, within=0.05),
            recorder.route,
        )

    async with agent.test_context() as context:
        routed = [await context.put(b"v1", key=b"t_1"), await context.put(b"v2", key=b"t_1")]
        await _until(lambda: all(e.message.acked for e in routed))
        assert len(recorder.batches) == 1
        recorder.fail = True
        failed = [await context.put(b"v3", key=b"t_1"), await context.put(b"v4", key=b"t_1")]
        await _until(lambda: len(recorder.batches) == 2)
        # The agent raised; once the abandoned take_events generator is finalised, its finally
        # has acknowledged each event (refcount 1 left: the agent's own reference).
        await _until(lambda: all(e.message.acked or e.message.refcount <= 1 for e in failed))
        assert [e.message.acked for e in failed] == [False, False]
        assert [e.message.refcount for e in failed] == [1, 1]


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        gc.collect()
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")
