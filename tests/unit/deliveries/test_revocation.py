"""Revoked partitions: lanes and the retry buffer drop their records unacknowledged.

The partition's next owner re-reads them from the committed offset, which an unacknowledged
record holds back; records of other partitions, and a batch already taken by a lane, go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from typing import Any

from processors.deliveries.envelope import DeliveryItem
from processors.tenants.models import ConnectionRecord
from tests.unit.deliveries import test_engine, test_retry_queue
from tests.unit.deliveries.test_engine import Harness
from tests.unit.deliveries.test_retry_queue import YEAR_MS, _Agent, _now_ms

EXPORTS = "integrations.exports.webhook"
RETRIES = "integrations.retry.webhook"


def _export(n: int, partition: int) -> DeliveryItem:
    return dataclasses.replace(test_engine._item(n), source_partition=partition)


def _held(n: int, partition: int, *, not_before_ms: int) -> DeliveryItem:
    item = test_retry_queue._item(n, tenant=f"t_{partition}", not_before_ms=not_before_ms)
    return dataclasses.replace(item, source_partition=partition)


async def test_queued_items_of_revoked_partitions_are_dropped_unacknowledged() -> None:
    release = asyncio.Event()
    h = Harness(lambda r: None)

    async def slow_sink(connection: ConnectionRecord) -> Any:
        await release.wait()
        return await Harness._sink(h, connection)

    h.engine._sink_factory = slow_sink
    acked: list[str] = []
    await h.engine.submit(_export(1, 1), functools.partial(acked.append, "d-1"))
    for _ in range(5):
        await asyncio.sleep(0)  # the lane task takes d-1 and waits for its sink
    for n, partition in [(2, 1), (3, 0), (4, 1), (5, 0)]:
        await h.engine.submit(_export(n, partition), functools.partial(acked.append, f"d-{n}"))
    assert h.engine.queued() == 4

    dropped = h.engine.drop_partitions({(EXPORTS, 1), (RETRIES, 0)})

    assert dropped == 2
    assert h.engine.queued() == 2
    release.set()
    for _ in range(200):
        if len(acked) == 3:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await h.engine.close()
    # d-1 was taken before the revocation: it is sent and acknowledged as usual; the others
    # of partition 1 are neither sent nor acknowledged nor recorded; partition 0 is untouched
    assert acked == ["d-1", "d-3", "d-5"]
    assert [r.delivery_id for s in h.sinks for r in s.sent] == ["d-1", "d-3", "d-5"]
    assert {r.delivery_id for r in h.records.added} == {"d-1", "d-3", "d-5"}
    assert h.on("retry.webhook") == []


async def test_dropping_a_partition_the_engine_holds_nothing_of_changes_nothing() -> None:
    h = Harness(lambda r: None)
    assert h.engine.drop_partitions({(EXPORTS, 0)}) == 0  # no lane yet
    acked = await h.run([_export(1, 0), _export(2, 1)])
    assert sorted(acked) == ["d-1", "d-2"]


async def test_held_retries_of_revoked_partitions_are_dropped_unacknowledged() -> None:
    agent = _Agent()
    agent.start()
    far = _now_ms(YEAR_MS)
    for n, partition in [(1, 0), (2, 1), (3, 1), (4, 2)]:
        await agent.put(_held(n, partition, not_before_ms=far))
    assert len(agent.queue) == 4

    assert agent.queue.drop_partitions({(RETRIES, 1), (EXPORTS, 0)}) == 2

    assert len(agent.queue) == 2
    # the others are still held and re-queued when their hold ends; the dropped never are
    await agent.until(lambda: sorted(agent.acked) == ["d-1", "d-4"])
    await asyncio.sleep(0.1)
    assert sorted(agent.requeued) == ["d-1", "d-4"]
    assert agent.released == []
    assert sorted(agent.acked) == ["d-1", "d-4"]
    await agent.stop()


async def test_dropping_held_retries_makes_room_in_a_full_buffer() -> None:
    agent = _Agent(capacity=2)  # not started: nothing is released or re-queued
    # due within the hold: a full buffer of these makes the next record wait for room (far
    # records would make room themselves, by going back to the retry topic)
    near = _now_ms(10)
    await agent.put(_held(1, 1, not_before_ms=near))
    await agent.put(_held(2, 1, not_before_ms=near))
    waiting = asyncio.create_task(agent.put(_held(3, 0, not_before_ms=near)))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the buffer is full"

    assert agent.queue.drop_partitions({(RETRIES, 1)}) == 2

    await asyncio.wait_for(waiting, 5.0)
    assert len(agent.queue) == 1
    assert agent.acked == []


async def test_a_due_record_of_another_partition_is_released_after_a_drop() -> None:
    agent = _Agent()
    agent.start()
    await agent.put(_held(1, 1, not_before_ms=_now_ms(YEAR_MS)))
    await agent.put(_held(2, 0, not_before_ms=_now_ms()))
    assert agent.queue.drop_partitions({(RETRIES, 1)}) == 1
    await agent.until(lambda: agent.released == ["d-2"])
    assert agent.acked == ["d-2"]
    assert agent.requeued == []
    await agent.stop()
