"""The held-record bookkeeping (processors.identity.held) and its release, on the real Redis.

Each test uses its own key prefix and deletes every key under it; the Kafka side of a release
is a stand-in (the integration test in tests/integration/test_held_release.py sends for real).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Mapping

import pytest
from redis.asyncio import Redis

from connectors.base import EntityKind, IdentityCandidate, IdentityOutcome
from connectors.base.contract import CompanyRecord
from processors.identity.held import (
    HeldRecord,
    HeldStore,
    HeldSubject,
    ReleaseError,
)
from processors.identity.repository import IdentityRepository, MatchRef, ReviewEntry
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.identity.review import MatchReviewService
from processors.operations.reinject import Reinjector
from processors.operations.release import HeldReleaser

SUBJECT = HeldSubject("conn_1", "company", "co_1")
NOW_MS = 1_765_000_000_000


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"qi-unit-held-{uuid.uuid4().hex[:12]}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _record(n: int, *, held_at_ms: int = NOW_MS, subject: HeldSubject = SUBJECT) -> HeldRecord:
    headers = {
        "qi.delivery_id": f"d-{n}",
        "qi.tenant_id": "t_1",
        "qi.connector": "hubspot",
        "qi.connection_id": subject.connection_id,
        "qi.idempotency_key": f"qik_{n}",
        "qi.entity_version": str(n),
    }
    return HeldRecord.of(
        subject=subject,
        value=f"value-{n}".encode(),
        headers=headers,
        topic="integrations.retry.hubspot",
        partition=3,
        offset=100 + n,
        held_at_ms=held_at_ms,
    )


async def test_a_held_record_keeps_its_value_envelope_and_position(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    await store.hold(_record(1))
    [held] = await store.held(SUBJECT)
    assert held.value == b"value-1"
    assert held.headers["qi.idempotency_key"] == "qik_1"
    assert (held.topic, held.partition, held.offset) == ("integrations.retry.hubspot", 3, 101)
    assert (held.tenant_id, held.connector, held.first_held_at_ms) == ("t_1", "hubspot", NOW_MS)


async def test_one_key_held_twice_is_one_entry_with_its_earliest_hold_time(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    await store.hold(_record(1, held_at_ms=NOW_MS))
    await store.hold(_record(1, held_at_ms=NOW_MS + 5_000))
    held = await store.held(SUBJECT)
    assert [r.idempotency_key for r in held] == ["qik_1"]
    assert held[0].first_held_at_ms == NOW_MS


async def test_an_entity_keeps_only_its_newest_records(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix, max_per_entity=3)
    dropped = [await store.hold(_record(n)) for n in range(1, 6)]
    assert dropped == [0, 0, 0, 1, 1]
    assert [r.entity_version for r in await store.held(SUBJECT)] == [5, 4, 3]


async def test_a_take_releases_the_list_once_even_when_two_decisions_race(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    for n in (1, 2):
        await store.hold(_record(n))
    first, second = await asyncio.gather(
        store.take(SUBJECT, release_id="rel-a", connector="hubspot"),
        store.take(SUBJECT, release_id="rel-b", connector="hubspot"),
    )
    winners = [t for t in (first, second) if t.records]
    assert len(winners) == 1
    [winner] = winners
    loser = second if winner is first else first
    assert loser.records == []
    assert {r.idempotency_key for r in winner.records} == {"qik_1", "qik_2"}
    await store.finish(SUBJECT, winner)
    again = await store.take(SUBJECT, release_id="rel-c", connector="hubspot")
    assert (again.release_id, again.records, again.busy) == (None, [], False)
    assert await store.held(SUBJECT) == []
    assert await store.due("hubspot", older_than_ms=NOW_MS + 1) == []


async def test_an_abandoned_release_is_resumed_with_its_own_id(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    await store.hold(_record(1))
    taken = await store.take(SUBJECT, release_id="rel-a", connector="hubspot")
    await store.abandon(SUBJECT, taken)
    resumed = await store.take(SUBJECT, release_id="rel-b", connector="hubspot")
    assert resumed.release_id == "rel-a"
    assert [r.idempotency_key for r in resumed.records] == ["qik_1"]


async def test_records_past_the_budget_expire_and_the_younger_stay(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    other = HeldSubject("conn_1", "company", "co_2")
    await store.hold(_record(1, held_at_ms=NOW_MS))
    await store.hold(_record(2, held_at_ms=NOW_MS + 10_000))
    await store.hold(_record(3, held_at_ms=NOW_MS + 10_000, subject=other))
    assert await store.due("hubspot", older_than_ms=NOW_MS + 1) == [SUBJECT]
    assert await store.due("pipedrive", older_than_ms=NOW_MS + 1) == []
    expired = await store.expire(SUBJECT, connector="hubspot", older_than_ms=NOW_MS + 1)
    assert [r.idempotency_key for r in expired] == ["qik_1"]
    assert [r.idempotency_key for r in await store.held(SUBJECT)] == ["qik_2"]
    assert await store.due("hubspot", older_than_ms=NOW_MS + 1) == []
    assert set(await store.due("hubspot", older_than_ms=NOW_MS + 10_000)) == {SUBJECT, other}
    taken = await store.take(SUBJECT, release_id="rel-a", connector="hubspot")
    assert await store.expire(SUBJECT, connector="hubspot", older_than_ms=NOW_MS + 99_999) == []
    assert [r.idempotency_key for r in taken.records] == ["qik_2"]


class _Reinjector(Reinjector):
    """Collects copies instead of producing them; ``refuse`` makes the flush fail."""

    def __init__(self, sent: list[tuple[str, str, str]], *, refuse: bool = False) -> None:
        self.sent = sent
        self.refuse = refuse
        self.pending: list[tuple[str, str, str]] = []

    def queue(
        self,
        value: bytes,
        headers: Mapping[str, str],
        *,
        run_id: str,
        kind: str,
        now_ms: int | None = None,
        topic: str | None = None,
    ) -> None:
        self.pending.append((headers["qi.idempotency_key"], run_id, kind))

    def flush(self, timeout: float = 30.0) -> None:
        if self.refuse:
            raise RuntimeError("broker down")
        self.sent.extend(self.pending)


async def test_a_release_sends_each_held_record_once_as_a_release_run(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    for n in (1, 2):
        await store.hold(_record(n))
    sent: list[tuple[str, str, str]] = []
    releaser = HeldReleaser(store, lambda: _Reinjector(sent))
    first = await releaser.release(SUBJECT, connector="hubspot", tenant_id="t_1", decision="x")
    second = await releaser.release(SUBJECT, connector="hubspot", tenant_id="t_1", decision="x")
    assert first.released == 2
    assert first.release_id is not None
    assert first.release_id.startswith("rel-")
    assert sorted(sent) == [
        ("qik_1", first.release_id, "release"),
        ("qik_2", first.release_id, "release"),
    ]
    assert (second.released, second.release_id) == (0, None)


async def test_a_refused_release_keeps_the_records_for_the_next_decision(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    store = HeldStore(client, key_prefix=prefix)
    await store.hold(_record(1))
    sent: list[tuple[str, str, str]] = []
    refusing = HeldReleaser(store, lambda: _Reinjector(sent, refuse=True))
    with pytest.raises(ReleaseError):
        await refusing.release(SUBJECT, connector="hubspot", tenant_id="t_1", decision="x")
    assert sent == []
    working = HeldReleaser(store, lambda: _Reinjector(sent))
    resumed = await working.release(SUBJECT, connector="hubspot", tenant_id="t_1", decision="y")
    assert resumed.released == 1
    assert [key for key, _, _ in sent] == ["qik_1"]


async def test_a_rejected_review_releases_and_its_candidates_are_not_offered_again(
    redis: tuple[Redis, str],
) -> None:
    client, prefix = redis
    repository = IdentityRepository(client, key_prefix=prefix)
    store = HeldStore(client, key_prefix=prefix)
    await repository.add_review(
        ReviewEntry(
            tenant_id="t_1",
            connection_id="conn_1",
            kind="company",
            queast_id="co_1",
            best_candidate_id="p_1",
            confidence=1.0,
            strategy="domain",
            explanation="two objects share the domain",
            candidates=[{"partner_object_id": "p_1"}, {"partner_object_id": "p_2"}],
        )
    )
    await store.hold(_record(1))
    sent: list[tuple[str, str, str]] = []
    service = MatchReviewService(
        repository, releaser=HeldReleaser(store, lambda: _Reinjector(sent))
    )
    ref = MatchRef("t_1", "conn_1", "company", "co_1")
    decision = await service.unlink(ref, connector="hubspot")
    assert decision.link is None
    assert decision.released.released == 1
    assert await repository.review("conn_1", "company", "co_1") is None
    assert await repository.rejected("conn_1", "company", "co_1") == ["p_1", "p_2"]
    assert await repository.get("conn_1", "company", "co_1") is None
    resolver = ConnectionIdentityResolver(
        repository, tenant_id="t_1", connection_id="conn_1", policy=MatchPolicy()
    )
    again = await resolver.decide(
        EntityKind.COMPANY,
        "co_1",
        CompanyRecord(company_id="co_1", name="Acme", domain="acme.example"),
        [
            IdentityCandidate("p_1", domains=("acme.example",)),
            IdentityCandidate("p_2", domains=("acme.example",)),
        ],
    )
    assert again.outcome is IdentityOutcome.NO_MATCH  # the sink creates a new object
