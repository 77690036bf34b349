"""Redis or Kafka failing under the delivery and retry agents: nothing escapes, nothing is
acknowledged before it is written, nothing is sent to a partner twice because of it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.base import BaseSink
from processors.agents.deliver import release_due, until_written
from processors.deliveries import engine as engine_module
from processors.deliveries.envelope import DeliveryItem
from processors.deliveries.outputs import Ack
from processors.routing.service import OutgoingRecord
from processors.tenants.models import ConnectionRecord
from tests.unit.deliveries.test_engine import Harness, _headers, _item, _State


class _Flaky:
    """Fails the first ``failures`` calls with a Redis connection error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            msg = "Connection refused"
            raise RedisConnectionError(msg)


class _FlakyState(_State):
    """The in-memory state, whose writes fail a given number of times first."""

    def __init__(self, *, mark_failures: int = 0, hops_failures: int = 0) -> None:
        super().__init__()
        self.mark_flaky = _Flaky(mark_failures)
        self.hops_flaky = _Flaky(hops_failures)

    async def mark_delivered(self, items: Sequence[DeliveryItem]) -> None:
        self.mark_flaky.check()
        await super().mark_delivered(items)

    async def record_hops(self, hops: Sequence[tuple[str, int]]) -> None:
        self.hops_flaky.check()
        await super().record_hops(hops)


def _retries(component: str) -> float:
    value = REGISTRY.get_sample_value(
        "qi_backend_retries_total", {"component": component, "error": "ConnectionError"}
    )
    return value or 0.0


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_FIRST_COMMIT_BACKOFF", 0.001)


async def _wait_for(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_a_deferral_meeting_a_redis_error_is_written_once_and_submit_does_not_raise() -> None:
    release = asyncio.Event()
    h = Harness(lambda r: None, lane_capacity=1)
    h.state = h.engine._state = _FlakyState(hops_failures=2)

    async def slow_sink(connection: ConnectionRecord) -> BaseSink[Any]:
        await release.wait()
        return await Harness._sink(h, connection)

    h.engine._sink_factory = slow_sink
    before = _retries("delivery.commit")
    acked: list[str] = []
    await h.engine.submit(_item(1), functools.partial(acked.append, "d-1"))
    for _ in range(5):
        await asyncio.sleep(0)
    for n in range(2, 5):
        await h.engine.submit(_item(n), functools.partial(acked.append, f"d-{n}"))
    deferred = [_headers(r)["qi.delivery_id"] for r in h.on("retry.webhook")]
    assert deferred == ["d-4"], "the deferral is produced once, not once per try"
    assert "d-4" in acked
    assert h.state.hops == {"d-4": 1}
    assert _retries("delivery.commit") - before == 2
    release.set()
    await _wait_for(lambda: len(acked) == 4)
    await h.engine.close()
    assert sorted(acked) == ["d-1", "d-2", "d-3", "d-4"]


async def test_a_redis_error_after_the_partner_call_does_not_call_the_partner_again() -> None:
    h = Harness(lambda r: None)
    h.state = h.engine._state = _FlakyState(mark_failures=3)
    acked = await h.run([_item(1)])
    assert acked == ["d-1"]
    assert h.sent() == 1
    assert h.state.delivered == {f"qik_{1:032x}"}
    assert len(h.on("delivery-records")) == 1


async def test_a_kafka_error_writing_an_outcome_is_retried_without_acknowledging() -> None:
    h = Harness(lambda r: None)
    failures = [RuntimeError("broker unavailable")]
    produced: list[OutgoingRecord] = []
    acked: list[str] = []

    async def produce(records: Sequence[OutgoingRecord]) -> None:
        if failures:
            assert acked == [], "nothing is acknowledged before the outcome is written"
            raise failures.pop()
        produced.extend(records)

    h.engine._produce = produce
    acked.extend(await h.run([_item(1)]))
    assert acked == ["d-1"]
    assert [_headers(r)["qi.delivery_id"] for r in produced] == ["d-1"]
    assert h.sent() == 1


async def test_until_written_retries_until_the_operation_succeeds() -> None:
    flaky = _Flaky(failures=3)

    async def operation() -> None:
        flaky.check()

    before = _retries("test.op")
    await until_written(operation, connector="webhook", component="test.op", first_backoff=0.001)
    assert flaky.calls == 4
    assert _retries("test.op") - before == 3


async def test_the_release_task_survives_a_failing_submit_and_loses_no_record() -> None:
    due: asyncio.Queue[tuple[DeliveryItem, Ack]] = asyncio.Queue()
    acked: list[str] = []
    for n in (1, 2):
        due.put_nowait((_item(n), functools.partial(acked.append, f"d-{n}")))
    flaky = _Flaky(failures=2)
    submitted: list[str] = []

    async def submit(item: DeliveryItem, ack: Ack) -> None:
        flaky.check()
        submitted.append(item.delivery_id)
        ack()

    task = asyncio.create_task(
        release_due(due.get, submit, connector="webhook", first_backoff=0.001)
    )
    await _wait_for(lambda: len(acked) == 2)
    assert not task.done(), "the release task is still running"
    assert submitted == ["d-1", "d-2"]
    assert acked == ["d-1", "d-2"]
    due.put_nowait((_item(3), functools.partial(acked.append, "d-3")))
    await _wait_for(lambda: len(acked) == 3)
    assert acked == ["d-1", "d-2", "d-3"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
