"""The breaker's Redis state under concurrency: counts are never lost, one trip, one probe.

Separate clients stand in for separate workers; time is passed in (``now``), never slept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from processors.connection_health import HealthStore
from processors.deliveries.breaker import BreakerPolicy, Transition
from processors.deliveries.state import ConnectionHealth, DeliveryStateRepository
from processors.settings import Settings

WORKERS = 6
NOW = 1_800_000_000.0
POLICY = BreakerPolicy(
    threshold=10,
    window_seconds=600,
    probe_initial_seconds=30,
    probe_max_seconds=120,
    disable_after_seconds=3600,
)


@pytest.fixture
async def states(settings: Settings) -> AsyncIterator[list[DeliveryStateRepository]]:
    clients = [Redis.from_url(settings.redis.url) for _ in range(WORKERS)]
    yield [
        DeliveryStateRepository(
            client, key_prefix=settings.redis.key_prefix, dedupe_ttl_seconds=60, hop_ttl_seconds=60
        )
        for client in clients
    ]
    keys = [k async for k in clients[0].scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await clients[0].delete(*keys)
    for client in clients:
        await client.aclose()


async def test_concurrent_failures_are_all_counted_and_trip_exactly_once(
    states: list[DeliveryStateRepository],
) -> None:
    async def fail(state: DeliveryStateRepository, n: int) -> Transition:
        _breaker, transition = await state.breaker_failed(
            "conn_1",
            now=NOW + n * 0.001,
            reason="503",
            probe=False,
            updated_at=0.0,
            policy=POLICY,
        )
        return transition

    transitions = await asyncio.gather(*(fail(states[n % WORKERS], n) for n in range(4 * WORKERS)))
    breaker = await states[0].breaker("conn_1")
    assert breaker.failures == 4 * WORKERS
    assert breaker.failing
    assert transitions.count(Transition.FAILING) == 1


async def test_one_probe_per_interval_among_workers_and_a_success_resumes(
    states: list[DeliveryStateRepository],
) -> None:
    for _ in range(POLICY.threshold):
        await states[0].breaker_failed(
            "conn_1", now=NOW, reason="503", probe=False, updated_at=0.0, policy=POLICY
        )
    due = (await states[0].breaker("conn_1")).next_probe_at
    answers = await asyncio.gather(
        *(state.breaker_probe("conn_1", now=due, updated_at=0.0, policy=POLICY) for state in states)
    )
    assert [granted for _b, granted in answers].count(True) == 1
    transition = await states[1].breaker_succeeded("conn_1", updated_at=0.0, policy=POLICY)
    assert transition is Transition.RESUMED
    assert not (await states[2].breaker("conn_1")).counting


async def test_disabling_writes_the_health_and_a_save_forgets_both(
    states: list[DeliveryStateRepository], settings: Settings
) -> None:
    state = states[0]
    redis = Redis.from_url(settings.redis.url)
    prefix = settings.redis.key_prefix
    for _ in range(POLICY.threshold):
        await state.breaker_failed(
            "conn_1", now=NOW, reason="timeout", probe=False, updated_at=0.0, policy=POLICY
        )
    _breaker, transition = await state.breaker_failed(
        "conn_1", now=NOW + 3600, reason="timeout", probe=True, updated_at=0.0, policy=POLICY
    )
    assert transition is Transition.DISABLED
    health = await state.connection_state("conn_1")
    assert health is not None
    assert health.health is ConnectionHealth.DISABLED
    assert "timeout" in health.reason
    assert health.since == NOW + 3600
    assert not (await state.breaker("conn_1")).counting
    await state.breaker_failed(
        "conn_1:webhook", now=NOW, reason="503", probe=False, updated_at=0.0, policy=POLICY
    )
    store = HealthStore(redis, key_prefix=prefix)
    shown, _breaker = await store.read("conn_1")
    assert shown == health
    await store.forget(["conn_1", "conn_1:webhook"])
    await redis.aclose()
    assert await state.connection_state("conn_1") is None
    assert not (await state.breaker("conn_1:webhook")).counting


async def test_a_run_older_than_the_connection_save_starts_again(
    states: list[DeliveryStateRepository],
) -> None:
    state = states[0]
    await state.breaker_failed(
        "conn_1", now=NOW, reason="503", probe=False, updated_at=0.0, policy=POLICY
    )
    breaker, _ = await state.breaker_failed(
        "conn_1", now=NOW + 20, reason="503", probe=False, updated_at=NOW + 10, policy=POLICY
    )
    assert breaker.failures == 1
    assert breaker.first_failure_at == NOW + 20
