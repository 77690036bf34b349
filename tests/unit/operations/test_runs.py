"""The run store and the delivery index's run counters, over the real Redis (own key prefix)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from processors.deliveries.models import DeliveryRecord, DeliveryStatus
from processors.deliveries.records import DeliveryRecordIndex
from processors.operations.runs import (
    ActiveRunError,
    RunRecord,
    RunStatus,
    RunStore,
    new_run_id,
)

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"ut{uuid.uuid4().hex[:10]}:"
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _run(run_id: str, *, connector: str = "webhook", dry_run: bool = False) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        kind="replay",
        tenant_id="t_1",
        connector=connector,
        since=NOW - timedelta(hours=1),
        until=NOW,
        event_types=["company.upserted"],
        dry_run=dry_run,
        requested_by="ops-1",
        created_at=datetime.now(UTC),
    )


def _record(run_id: str | None, delivery: str, status: DeliveryStatus) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=delivery,
        event_id="evt-1",
        correlation_id="corr-1",
        tenant_id="t_1",
        connection_id="conn_1",
        connector="webhook",
        destination="webhook",
        event_type="company.upserted",
        idempotency_key=f"key-{delivery}",
        entity_id="co_1",
        entity_version=1,
        attempt=1,
        status=status,
        replay_id=run_id,
        started_at=NOW,
        finished_at=NOW,
        duration_ms=1.0,
    )


async def test_a_run_is_stored_and_read_back_as_written(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix, run_ttl_seconds=3600)
    run = await store.create(_run("rp_1"))
    read = await store.get("rp_1")
    assert read is not None
    assert read.model_dump(exclude={"heartbeat_at"}) == run.model_dump(exclude={"heartbeat_at"})
    assert 0 < await client.ttl(f"{prefix}run:rp_1") <= 3600
    assert await store.get("rp_unknown") is None


async def test_one_active_run_per_connection_a_second_is_refused_naming_the_first(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix)
    first = await store.create(_run("rp_1"))
    with pytest.raises(ActiveRunError, match="rp_1") as refused:
        await store.create(_run("rp_2"))
    assert refused.value.active_run_id == "rp_1"
    assert await store.get("rp_2") is None, "the refused run is not stored"
    await store.create(_run("rp_3", dry_run=True))  # a dry run sends nothing: no slot
    await store.create(_run("rp_4", connector="hubspot"))  # another connection
    await store.update(first, {"status": RunStatus.COMPLETED}, ended=True)
    await store.create(_run("rp_5"))  # the slot is free once the first ended


async def test_a_run_without_heartbeat_reads_failed_and_frees_its_slot(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix, heartbeat_stale_seconds=5)
    old = datetime.now(UTC) - timedelta(minutes=5)
    await store.create(
        _run("rp_1").model_copy(
            update={"status": RunStatus.RUNNING, "created_at": old, "heartbeat_at": old}
        )
    )
    read = await store.get("rp_1")
    assert read is not None
    assert read.status is RunStatus.FAILED
    assert read.error is not None
    assert read.error.startswith("stale")
    again = await store.get("rp_1")
    assert again is not None
    assert again.status is RunStatus.FAILED, "the mark is written, not only shown"
    await store.create(_run("rp_2"))


async def test_cancel_is_a_flag_on_active_runs_only(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix)
    run = await store.create(_run("rp_1"))
    assert not await store.cancel_requested("rp_1")
    asked = await store.request_cancel("rp_1")
    assert asked is not None
    assert asked.cancel_requested
    assert await store.cancel_requested("rp_1")
    assert await store.request_cancel("rp_unknown") is None
    await store.update(run, {"status": RunStatus.COMPLETED}, ended=True)
    ended = await store.create(_run("rp_2"))
    await store.update(ended, {"status": RunStatus.COMPLETED}, ended=True)
    finished = await store.request_cancel("rp_2")
    assert finished is not None
    assert not finished.cancel_requested
    assert not await store.cancel_requested("rp_2")


async def test_the_hourly_rate_slides_and_a_refused_run_gives_its_start_back(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix)
    at = 1_800_000_000.0
    assert await store.take_rate_slot("t_1", "replay", per_hour=2, slot="a", now=at) is None
    assert await store.take_rate_slot("t_1", "replay", per_hour=2, slot="b", now=at + 60) is None
    wait = await store.take_rate_slot("t_1", "replay", per_hour=2, slot="c", now=at + 120)
    assert wait == pytest.approx(3600 - 120)
    other = await store.take_rate_slot("t_2", "replay", per_hour=2, slot="d", now=at + 120)
    assert other is None, "the rate is per tenant"
    await store.release_rate_slot("t_1", "replay", slot="b")
    assert await store.take_rate_slot("t_1", "replay", per_hour=2, slot="e", now=at + 130) is None
    assert await store.take_rate_slot("t_1", "replay", per_hour=2, slot="f", now=at + 3601) is None


async def test_the_index_counts_each_copys_final_outcome_once_in_its_run(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = RunStore(client, key_prefix=prefix, run_ttl_seconds=3600)
    await store.create(_run("rp_1"))
    index = DeliveryRecordIndex(client, key_prefix=prefix)
    await index.add_many(
        [
            _record("rp_1", "d1", DeliveryStatus.RETRY_SCHEDULED),
            _record("rp_1", "d1", DeliveryStatus.DELIVERED),
            _record("rp_1", "d2", DeliveryStatus.DELIVERED),
            _record("rp_1", "d3", DeliveryStatus.DEAD_LETTERED),
            _record("rp_1", "d4", DeliveryStatus.STALE_SKIPPED),
            _record(None, "d5", DeliveryStatus.DELIVERED),
            _record("rp_gone", "d6", DeliveryStatus.DELIVERED),
        ]
    )
    await index.add_many([_record("rp_1", "d2", DeliveryStatus.DELIVERED)])  # written twice
    run = await store.get("rp_1")
    assert run is not None
    assert (run.delivered, run.failed, run.skipped) == (2, 1, 1)
    assert not await client.exists(f"{prefix}run:rp_gone"), "no counters without a run"
    counted_ttl = await client.ttl(f"{prefix}run:rp_1:counted")
    assert 0 < counted_ttl <= await client.ttl(f"{prefix}run:rp_1"), "counters expire with it"


def test_run_ids_name_their_kind_and_unknown_kinds_are_refused() -> None:
    assert new_run_id("replay").startswith("rp_")
    assert new_run_id("backfill").startswith("bf_")
    with pytest.raises(ValueError, match="unknown run kind"):
        new_run_id("rewind")
