"""The retry agent's delay queue: near records wait in memory, far ones are re-queued."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import pytest

from processors.agents.deliver import _DelayQueue
from processors.contracts import ContractFamily, default_registry, encode
from processors.deliveries.envelope import DeliveryItem, item_from_record
from processors.deliveries.outputs import Ack

HOLD = 0.05
YEAR_MS = 365 * 86400 * 1000


def _item(n: int, *, tenant: str, not_before_ms: int) -> DeliveryItem:
    schema = default_registry().latest(ContractFamily.COMPANY)
    record = {
        "event_type": "company.upserted",
        "schema_version": schema.schema_version,
        "occurred_at": "2026-11-26T05:00:00Z",
        "idempotency_key": f"qik_{n:032x}",
        "tenant_id": tenant,
        "connection_id": f"conn_{tenant}",
        "correlation_id": f"corr-{n}",
        "event_id": f"ev-{n}",
        "entity_version": 1,
        "company_id": f"co_{n}",
    }
    headers = {
        "qi.delivery_id": f"d-{n}",
        "qi.tenant_id": tenant,
        "qi.connector": "webhook",
        "qi.connection_id": f"conn_{tenant}",
        "qi.event_type": "company.upserted",
        "qi.event_id": f"ev-{n}",
        "qi.idempotency_key": f"qik_{n:032x}",
        "qi.correlation_id": f"corr-{n}",
        "qi.entity_id": f"co_{n}",
        "qi.entity_version": "1",
        "qi.contract": "company",
        "qi.schema_version": schema.schema_version,
        "qi.attempt": "1",
        "qi.hop": "1",
        "qi.not_before": str(not_before_ms),
        "qi.first_attempt_at": str(int(time.time() * 1000)),
    }
    return item_from_record(
        value=encode(schema, record),
        headers=headers,
        topic="integrations.retry.webhook",
        partition=0,
        offset=n,
    )


def _now_ms(offset_ms: int = 0) -> int:
    return int(time.time() * 1000) + offset_ms


class _Agent:
    """The retry agent around a queue: acks, re-queued records, records handed on as due."""

    def __init__(self, capacity: int = 100, *, fail_requeues: int = 0) -> None:
        self.acked: list[str] = []
        self.requeued: list[str] = []
        self.released: list[str] = []
        self.fail_requeues = fail_requeues
        self.queue = _DelayQueue(
            capacity, hold_seconds=HOLD, max_wait_seconds=3600.0, requeue=self._requeue
        )
        self._task: asyncio.Task[None] | None = None

    async def _requeue(self, held: Sequence[tuple[DeliveryItem, Ack]]) -> None:
        if self.fail_requeues:
            self.fail_requeues -= 1
            raise ConnectionError("kafka unavailable")
        for item, ack in held:
            self.requeued.append(item.delivery_id)
            ack()

    async def put(self, item: DeliveryItem) -> None:
        await self.queue.put(item, lambda: self.acked.append(item.delivery_id))

    def start(self) -> None:
        async def release() -> None:
            while True:
                item, ack = await self.queue.due()
                self.released.append(item.delivery_id)
                ack()

        self._task = asyncio.create_task(release())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.01)


async def test_a_far_record_is_requeued_after_the_hold_and_its_offset_released() -> None:
    agent = _Agent()
    agent.start()
    await agent.put(_item(1, tenant="t_far", not_before_ms=_now_ms(1000 * YEAR_MS)))
    await agent.put(_item(2, tenant="t_near", not_before_ms=_now_ms()))
    await agent.until(lambda: agent.acked == ["d-2", "d-1"])
    assert agent.released == ["d-2"]
    assert agent.requeued == ["d-1"], "written back to the retry topic, not held for years"
    assert len(agent.queue) == 0
    await agent.stop()


async def test_a_record_due_within_the_hold_is_released_not_requeued() -> None:
    agent = _Agent()
    agent.start()
    await agent.put(_item(1, tenant="t_1", not_before_ms=_now_ms(10)))
    await agent.until(lambda: agent.released == ["d-1"])
    assert agent.requeued == []
    await agent.stop()


async def test_one_tenants_far_records_cannot_keep_the_others_out_of_a_full_buffer() -> None:
    agent = _Agent(capacity=3)
    agent.start()
    for n in range(1, 4):
        await agent.put(_item(n, tenant="t_far", not_before_ms=_now_ms(10**12)))
    # the buffer is full of one tenant's far-future records; another tenant's retry still
    # gets in once their hold ends, and is handed on
    await asyncio.wait_for(agent.put(_item(4, tenant="t_other", not_before_ms=_now_ms())), 5.0)
    await agent.until(lambda: agent.released == ["d-4"])
    # one far record made room for it at once; the others go back when their hold ends
    await agent.until(lambda: sorted(agent.requeued) == ["d-1", "d-2", "d-3"])
    await agent.stop()


async def test_a_failed_requeue_keeps_the_record_and_tries_again() -> None:
    agent = _Agent(fail_requeues=2)
    agent.start()
    await agent.put(_item(1, tenant="t_far", not_before_ms=_now_ms(YEAR_MS)))
    await agent.until(lambda: agent.requeued == ["d-1"])
    assert agent.acked == ["d-1"], "acknowledged once, after the copy was written"
    await agent.stop()


@pytest.mark.parametrize(
    "not_before_ms", [10**4000, -(10**4000), 2**63], ids=["huge", "huge-negative", "2^63"]
)
async def test_any_not_before_is_held_within_bounds(not_before_ms: int) -> None:
    agent = _Agent()
    agent.start()
    await agent.put(_item(1, tenant="t_1", not_before_ms=not_before_ms))
    await agent.until(lambda: agent.acked == ["d-1"])
    await agent.stop()


# -- a full buffer: far records make room, or go round, instead of stopping reading ----------


class _FullBuffer:
    """A queue of capacity 3 whose hold is long, filled with one tenant's far records."""

    def __init__(self, *, min_lap_seconds: float = 0.0) -> None:
        self.requeued: list[str] = []
        self.acked: list[str] = []
        self.queue = _DelayQueue(
            3,
            hold_seconds=600.0,
            max_wait_seconds=10**9,
            requeue=self._requeue,
            min_lap_seconds=min_lap_seconds,
        )

    async def _requeue(self, held: Sequence[tuple[DeliveryItem, Ack]]) -> None:
        for item, ack in held:
            self.requeued.append(item.delivery_id)
            ack()

    async def put(self, item: DeliveryItem, *, written_at: float | None = None) -> None:
        await self.queue.put(
            item, lambda: self.acked.append(item.delivery_id), written_at=written_at
        )

    async def fill(self) -> None:
        for n, days in ((1, 1), (2, 3), (3, 2)):
            await self.put(_item(n, tenant="t_far", not_before_ms=_now_ms(days * 86400 * 1000)))
        assert len(self.queue) == 3
        assert self.requeued == []


async def test_a_near_record_takes_the_place_of_the_far_record_due_last() -> None:
    buffer = _FullBuffer()
    await buffer.fill()
    await asyncio.wait_for(buffer.put(_item(4, tenant="t_near", not_before_ms=_now_ms(50))), 5)
    assert buffer.requeued == ["d-2"], "the record due last went back to the retry topic"
    assert buffer.acked == ["d-2"]
    assert len(buffer.queue) == 3
    item, _ack = await asyncio.wait_for(buffer.queue.due(), 5)
    assert item.delivery_id == "d-4"


async def test_a_far_record_arriving_at_a_full_buffer_goes_round_instead_of_blocking() -> None:
    buffer = _FullBuffer()
    await buffer.fill()
    far = _item(4, tenant="t_far", not_before_ms=_now_ms(5 * 86400 * 1000))
    await asyncio.wait_for(buffer.put(far, written_at=time.time() - 60), 5)
    assert buffer.requeued == ["d-4"]
    assert buffer.acked == ["d-4"], "acknowledged, so reading moves past it"
    assert len(buffer.queue) == 3, "the held records stay held"


async def test_a_far_record_that_just_went_round_waits_a_lap_before_going_round_again() -> None:
    buffer = _FullBuffer(min_lap_seconds=0.3)
    await buffer.fill()
    far = _item(4, tenant="t_far", not_before_ms=_now_ms(5 * 86400 * 1000))
    put = asyncio.create_task(buffer.put(far, written_at=time.time()))
    await asyncio.sleep(0)
    assert buffer.requeued == [], "not written again the moment it was read"
    await asyncio.wait_for(put, 5)
    assert buffer.requeued == ["d-4"]


async def test_a_buffer_full_of_near_records_still_waits_for_room() -> None:
    buffer = _FullBuffer()
    for n in range(1, 4):
        await buffer.put(_item(n, tenant="t_near", not_before_ms=_now_ms(60_000)))
    put = asyncio.create_task(buffer.put(_item(4, tenant="t_near", not_before_ms=_now_ms(60_000))))
    await asyncio.sleep(0.05)
    assert not put.done(), "no record is pushed out for one due as soon"
    assert buffer.requeued == []
    put.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await put


async def test_room_is_made_from_held_records_only_after_a_revocation_dropped_some() -> None:
    buffer = _FullBuffer()
    await buffer.fill()
    assert buffer.queue.drop_partitions({("integrations.retry.webhook", 0)}) == 3
    assert buffer.acked == [], "dropped records are not acknowledged: the new owner reads them"
    for n, days in ((5, 1), (6, 2), (7, 1)):
        await buffer.put(_item(n, tenant="t_far", not_before_ms=_now_ms(days * 86400 * 1000)))
    await asyncio.wait_for(buffer.put(_item(8, tenant="t_near", not_before_ms=_now_ms(50))), 5)
    assert buffer.requeued == ["d-6"], "the held record due last, not one dropped before"
    assert len(buffer.queue) == 3
