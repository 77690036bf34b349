"""The engine's Hold branch and its review_timeout sweep, with the held store on the real Redis.

The engine's other collaborators are the in-memory stand-ins of ``test_engine``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from connectors.base import HeldForReviewError
from processors.contracts import default_registry, encode
from processors.contracts.enums import ContractFamily
from processors.contracts.samples import representative_records
from processors.deliveries.engine import DeliveryEngine
from processors.deliveries.policy import RetryPolicy
from processors.identity.held import HeldStore, HeldSubject
from processors.settings import DeliverySettings
from processors.topics import TopicMap
from tests.unit.deliveries.test_engine import NOW, Harness, _item

BUDGET = 600.0


@pytest.fixture
async def store() -> AsyncIterator[HeldStore]:
    client = Redis.from_url(os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"qi-unit-engine-held-{uuid.uuid4().hex[:12]}:"
    try:
        yield HeldStore(client, key_prefix=prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _holding(store: HeldStore, reason: str | None = None) -> Harness:
    """A harness whose partner holds every record, its engine keeping a held store."""
    h = Harness(lambda r: HeldForReviewError(reason))
    h.engine = DeliveryEngine(
        connector="webhook",
        max_batch_size=1,
        topics=TopicMap(""),
        settings=DeliverySettings(
            lane_capacity=100,
            lane_concurrency=1,
            lane_batches=2,
            retry_timeout_seconds=BUDGET,
        ),
        state=h.state,
        connections=h.connections,
        records=h.records,
        produce=h._produce,
        sink_factory=h._sink,
        throttle=h.engine._throttle,
        policy=RetryPolicy(
            max_attempts=3, timeout_seconds=BUDGET, base_delay_seconds=1, max_delay_seconds=10
        ),
        registry=default_registry(),
        clock=lambda: h.clock,
        held=store,
    )
    return h


async def test_a_held_record_is_kept_with_its_review_before_it_is_acknowledged(
    store: HeldStore,
) -> None:
    h = _holding(store)
    item = _item(1)
    assert await h.run([item]) == ["d-1"]
    assert h.statuses() == ["held_for_review"]
    assert h.on("retry.webhook") == h.on("dlq.webhook") == []
    [held] = await store.held(HeldSubject("conn_1", "company", "co_1"))
    assert held.value == item.value
    assert held.idempotency_key == item.idempotency_key
    assert (held.topic, held.partition, held.offset) == ("integrations.exports.webhook", 0, 1)
    assert held.first_held_at_ms == int(NOW * 1000)


async def test_the_review_a_partner_names_is_the_one_the_record_waits_for(
    store: HeldStore,
) -> None:
    h = _holding(store, "ambiguous identity match held for review (review company:co_77)")
    await h.run([_item(1)])
    assert await store.held(HeldSubject("conn_1", "company", "co_1")) == []
    assert len(await store.held(HeldSubject("conn_1", "company", "co_77"))) == 1


async def test_a_record_held_again_past_its_budget_is_dead_lettered_review_timeout(
    store: HeldStore,
) -> None:
    h = _holding(store)
    item = _item(1)
    item.first_attempt_at_ms = int((NOW - BUDGET - 1) * 1000)
    assert await h.run([item]) == ["d-1"]
    assert h.statuses() == ["dead_lettered"]
    [dead] = h.on("dlq.webhook")
    headers = dict(dead.headers or ())
    assert headers["qi.error.reason"].decode().startswith("review_timeout")
    assert await store.held(HeldSubject("conn_1", "company", "co_1")) == []


async def test_the_sweep_dead_letters_held_records_once_their_budget_is_spent(
    store: HeldStore,
) -> None:
    h = _holding(store)
    await h.run_more([_item(1)])
    await h.engine.flush_index()
    assert h.statuses() == ["held_for_review"]
    h.clock = NOW + BUDGET / 2
    assert await h.engine.sweep_held() == 0
    h.clock = NOW + BUDGET + 1
    assert await h.engine.sweep_held() == 1
    assert await h.engine.sweep_held() == 0
    await h.engine.close()
    assert h.statuses() == ["held_for_review", "dead_lettered"]
    record = json.loads(h.on("delivery-records")[-1].value)
    assert record["last_error"]["reason"].startswith("review_timeout")
    assert record["last_error"]["error_class"] == "ReviewTimeout"
    assert len(h.on("dlq.webhook")) == 1
    assert await store.held(HeldSubject("conn_1", "company", "co_1")) == []


async def test_a_held_signal_waits_for_the_review_of_its_company(store: HeldStore) -> None:
    schema = default_registry().latest(ContractFamily.SIGNAL)
    record = representative_records(schema)[1]
    record.update(company_id="co_9", schema_version=schema.schema_version)
    item = _item(2)
    item.value = encode(schema, record)
    item.headers.update({"qi.contract": "signal", "qi.entity_id": "sig_1"})
    h = _holding(store)
    assert await h.run([item]) == ["d-2"]
    assert len(await store.held(HeldSubject("conn_1", "company", "co_9"))) == 1
    assert await store.held(HeldSubject("conn_1", "signal", "sig_1")) == []
