"""The send claim against the real Redis: one script decides, under any concurrency.

Many engines (separate clients, as separate workers would be) race for the same entities;
exactly one wins each, the others are told *busy*; once the winner wrote its outcome and
released, the others see it (delivered, stale) instead of sending again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from processors.deliveries.envelope import DeliveryItem, item_from_record
from processors.deliveries.state import ClaimResult, DeliveryStateRepository
from processors.settings import Settings

ENGINES = 8
ENTITIES = 50
LEASE = 30.0


def _item(
    entity: int, version: int, *, hop: int = 0, replay: bool = False, run_kind: str | None = None
) -> DeliveryItem:
    headers = {
        "qi.delivery_id": f"d-{entity}-{version}",
        "qi.tenant_id": "t_1",
        "qi.connector": "webhook",
        "qi.connection_id": "conn_1",
        "qi.event_type": "company.upserted",
        "qi.event_id": f"ev-{entity}-{version}",
        "qi.idempotency_key": f"qik_{entity}_{version}",
        "qi.correlation_id": f"corr-{entity}",
        "qi.entity_id": f"co_{entity}",
        "qi.entity_version": str(version),
        "qi.contract": "company",
        "qi.schema_version": "1.0",
        "qi.hop": str(hop),
    }
    if replay or run_kind is not None:
        headers["qi.replay_id"] = "r-1"
    if run_kind is not None:
        headers["qi.run.kind"] = run_kind
    return item_from_record(
        value=b"contract", headers=headers, topic="exports", partition=0, offset=entity
    )


@pytest.fixture
async def states(settings: Settings) -> AsyncIterator[list[DeliveryStateRepository]]:
    """One repository per engine, each with its own Redis client."""
    clients = [Redis.from_url(settings.redis.url) for _ in range(ENGINES)]
    yield [
        DeliveryStateRepository(
            client,
            key_prefix=settings.redis.key_prefix,
            dedupe_ttl_seconds=3600,
            hop_ttl_seconds=3600,
        )
        for client in clients
    ]
    for client in clients:
        await client.aclose()


async def test_concurrent_engines_get_one_claim_per_entity(
    states: list[DeliveryStateRepository],
) -> None:
    items = [_item(n, 1) for n in range(ENTITIES)]
    rounds = await asyncio.gather(
        *(
            state.claim(items, owner=f"engine-{e}", lease_seconds=LEASE)
            for e, state in enumerate(states)
        )
    )
    winners: Counter[int] = Counter()
    for claims in rounds:
        for n, claim in enumerate(claims):
            if claim.result is ClaimResult.CLAIMED:
                winners[n] += 1
            else:
                assert claim.result is ClaimResult.BUSY
                assert claim.lease_left_ms is not None
                assert 0 < claim.lease_left_ms <= LEASE * 1000
    assert winners == Counter(range(ENTITIES)), "every entity has exactly one holder"

    # each holder delivers, then releases; every other engine then sees the key delivered
    for e, (state, claims) in enumerate(zip(states, rounds, strict=True)):
        won = [
            item for item, c in zip(items, claims, strict=True) if c.result is ClaimResult.CLAIMED
        ]
        await state.mark_delivered(won)
        await state.release(won, owner=f"engine-{e}")
    again = await asyncio.gather(
        *(
            state.claim(items, owner=f"engine-{e}", lease_seconds=LEASE)
            for e, state in enumerate(states)
        )
    )
    assert {c.result for claims in again for c in claims} == {ClaimResult.DELIVERED}


async def test_versions_race_and_the_older_one_loses_once_the_newer_is_claimed(
    states: list[DeliveryStateRepository],
) -> None:
    old, new = states[0], states[1]
    (claim,) = await new.claim([_item(1, 5)], owner="new", lease_seconds=LEASE)
    assert claim.result is ClaimResult.CLAIMED
    (early,) = await old.claim([_item(1, 4)], owner="old", lease_seconds=LEASE)
    assert (early.result, early.newest_version) == (ClaimResult.STALE, 5), (
        "version 4 is stale while version 5 is being sent"
    )
    (same,) = await old.claim([_item(1, 5)], owner="old", lease_seconds=LEASE)
    assert same.result is ClaimResult.BUSY, "one sender per entity"
    await new.mark_delivered([_item(1, 5)])
    await new.release([_item(1, 5)], owner="new")
    (stale,) = await old.claim([_item(1, 4)], owner="old", lease_seconds=LEASE)
    assert (stale.result, stale.newest_version) == (ClaimResult.STALE, 5)
    (replayed,) = await old.claim([_item(1, 5, replay=True)], owner="old", lease_seconds=LEASE)
    assert replayed.result is ClaimResult.CLAIMED, "a replay bypasses dedupe, not the guard"
    for kind in ("redrive", "release", "backfill"):
        (again,) = await old.claim([_item(1, 5, run_kind=kind)], owner="old", lease_seconds=LEASE)
        assert again.result is ClaimResult.DELIVERED, f"a {kind} never sends a delivered key"
    (newer,) = await new.claim([_item(1, 6)], owner="new", lease_seconds=LEASE)
    assert newer.result is ClaimResult.BUSY


async def test_a_leftover_hop_is_dropped_and_claims_are_reentrant_and_owned(
    states: list[DeliveryStateRepository],
) -> None:
    state, other = states[0], states[1]
    await state.record_hops([("d-1-1", 2)])
    (leftover,) = await state.claim([_item(1, 1, hop=1)], owner="a", lease_seconds=LEASE)
    assert leftover.result is ClaimResult.LEFTOVER
    current = _item(1, 1, hop=2)
    assert (await state.claim([current], owner="a", lease_seconds=LEASE))[0].result is (
        ClaimResult.CLAIMED
    )
    assert (await state.claim([current], owner="a", lease_seconds=LEASE))[0].result is (
        ClaimResult.CLAIMED
    ), "the holder may claim again (a batch retried after a Redis error)"
    await other.release([current], owner="b")  # not b's to release
    assert (await other.claim([current], owner="b", lease_seconds=LEASE))[0].result is (
        ClaimResult.BUSY
    )


async def test_a_dead_holders_lease_expires_and_the_entity_can_be_claimed(
    states: list[DeliveryStateRepository],
) -> None:
    dead, alive = states[0], states[1]
    item = _item(7, 1)
    await dead.claim([item], owner="dead", lease_seconds=0.2)  # then the worker dies
    (busy,) = await alive.claim([item], owner="alive", lease_seconds=LEASE)
    assert busy.result is ClaimResult.BUSY
    deadline = time.monotonic() + 10
    result: ClaimResult = ClaimResult.BUSY
    while result is ClaimResult.BUSY and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        (claim,) = await alive.claim([item], owner="alive", lease_seconds=LEASE)
        result = claim.result
    assert result is ClaimResult.CLAIMED
    await dead.renew([item], owner="dead", lease_seconds=LEASE)  # too late: not its claim
    (still,) = await dead.claim([item], owner="dead", lease_seconds=LEASE)
    assert still.result is ClaimResult.BUSY


async def test_a_version_older_than_one_a_dead_holder_sent_is_stale_and_the_sent_one_goes_again(
    states: list[DeliveryStateRepository],
) -> None:
    # The holder sends version 9, the partner accepts it, and the worker is killed before it
    # writes the outcome: no delivered mark. Versions 3-8 were deferred earlier and come back.
    dead, alive = states[0], states[1]
    await dead.claim([_item(8, 9)], owner="dead", lease_seconds=0.2)
    (again,) = await alive.claim([_item(8, 9)], owner="alive", lease_seconds=LEASE)
    deadline = time.monotonic() + 10
    while again.result is ClaimResult.BUSY and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        (again,) = await alive.claim([_item(8, 9)], owner="alive", lease_seconds=LEASE)
    assert again.result is ClaimResult.CLAIMED, "the unrecorded version is read again and sent"
    await alive.release([_item(8, 9)], owner="alive")  # its outcome is not written yet either
    older = [_item(8, version) for version in range(3, 9)]
    claims = await alive.claim(older, owner="alive", lease_seconds=LEASE)
    assert [(c.result, c.newest_version) for c in claims] == [(ClaimResult.STALE, 9)] * len(older)
    (newer,) = await alive.claim([_item(8, 10)], owner="alive", lease_seconds=LEASE)
    assert newer.result is ClaimResult.CLAIMED
    (behind,) = await dead.claim([_item(8, 9)], owner="dead", lease_seconds=LEASE)
    assert (behind.result, behind.newest_version) == (ClaimResult.STALE, 10)
