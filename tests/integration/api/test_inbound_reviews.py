"""Inbound highlights to bookmarks and reviews: the real worker, Kafka, Redis and API.

Company directory from ``company.upserted`` events on ``queast.domain-events``, InboundEvent
records produced directly to ``integrations.inbound`` (as the intake writes them), bookmarks
read from ``queast.bookmarks``, reviews decided through the API.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from connectors.base.inbound import InboundCompany
from processors.api import MAX_BODY_BYTES
from processors.errors import Conflict, ServiceUnavailable
from processors.identity.repository import IdentityRepository, LinkState, MatchRef
from processors.inbound.directory import CompanyDirectory, directory_update
from processors.inbound.models import Bookmark, InboundEvent, InboundReview, bookmark_id_for
from processors.inbound.review_service import InboundReviewService
from processors.inbound.reviews import BookmarkMarks, ReviewStore
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.api.conftest import OTHER_ADMIN, OTHER_TENANT, PLATFORM, TENANT, TENANT_ADMIN
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

WEBHOOK_CONNECTION = "conn_in_webhook"
HUBSPOT_CONNECTION = "conn_in_hubspot"
COMPANIES: list[dict[str, Any]] = [
    {"company_id": "co_domain", "name": "Domain Works", "domain": "domainworks.io"},
    {"company_id": "co_nordic_1", "name": "Nordic Widgets"},
    {"company_id": "co_nordic_2", "name": "Nordic Widgets AB"},
    {"company_id": "co_linked", "name": "Linked Industries", "domain": "linked-ind.com"},
]


def _company_event(tenant_id: str, data: dict[str, Any], version: int = 1) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "company.upserted",
            "schema_version": "1.0",
            "tenant_id": tenant_id,
            "occurred_at": "2026-12-01T09:00:00Z",
            "correlation_id": str(uuid.uuid4()),
            "data": {**data, "version": version},
        }
    ).encode()


def _inbound(
    *, connector: str = "webhook", connection_id: str = WEBHOOK_CONNECTION, **company: str
) -> InboundEvent:
    return InboundEvent(
        inbound_id=f"in_{uuid.uuid4().hex}",
        tenant_id=TENANT,
        connector=connector,
        connection_id=connection_id,
        partner_event_id=f"evt-{uuid.uuid4().hex[:12]}",
        company=InboundCompany(**company),
        occurred_at=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
        received_at=datetime(2026, 12, 4, 9, 0, 1, tzinfo=UTC),
        correlation_id=str(uuid.uuid4()),
    )


def _values(records: list[ConsumedRecord], topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"{}") for r in records if r.topic == topic]


async def _wait_for(check: Callable[[], Awaitable[bool]], *, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError("condition not met in time")


async def test_highlights_become_bookmarks_once_and_a_shared_name_is_resolved_once(
    settings: Settings,
    topics: TopicMap,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
    redis_client: Redis,
    client: httpx.AsyncClient,
) -> None:
    prefix = settings.redis.key_prefix
    connections = ConnectionRepository(redis_client, key_prefix=prefix)
    for connector, connection_id in (
        ("webhook", WEBHOOK_CONNECTION),
        ("hubspot", HUBSPOT_CONNECTION),
    ):
        await connections.put(
            ConnectionRecord(
                tenant_id=TENANT, connector=Connector(connector), connection_id=connection_id
            )
        )
    # co_linked was written to HubSpot by this connection: partner object hs_501
    await IdentityRepository(redis_client, key_prefix=prefix).put(
        MatchRef(TENANT, HUBSPOT_CONNECTION, "company", "co_linked").link(
            "hs_501", state=LinkState.CREATED, strategy="created", confidence=1.0, explanation=""
        )
    )
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        [(TENANT.encode(), _company_event(TENANT, company)) for company in COMPANIES],
    )
    worker = start_worker(worker_factory, qi_env, tmp_path)
    directory_key = f"{prefix}tenant:{TENANT}:indir:companies"

    async def directory_built() -> bool:
        return int(await redis_client.hlen(directory_key)) == len(COMPANIES)

    await _wait_for(directory_built)

    by_domain = _inbound(domain="https://www.domainworks.io/about")
    linked = _inbound(
        connector="hubspot", connection_id=HUBSPOT_CONNECTION, partner_object_id="hs_501"
    )
    shared = _inbound(name="Nordic Widgets")
    after_poison = _inbound(domain="linked-ind.com")
    key = TENANT.encode()
    produce(
        settings.kafka.bootstrap_servers,
        topics.inbound,
        [
            (key, by_domain.model_dump_json().encode()),
            (key, by_domain.model_dump_json().encode()),
            (key, linked.model_dump_json().encode()),
            (key, b'{"inbound_id": "in_not-valid", "tenant_id": '),
            (key, shared.model_dump_json().encode()),
            (key, by_domain.model_dump_json().encode()),
            (key, linked.model_dump_json().encode()),
            (key, after_poison.model_dump_json().encode()),
            (key, linked.model_dump_json().encode()),
        ],
    )
    reader = TopicReader(
        settings.kafka.bootstrap_servers,
        [topics.bookmarks, topics.match_review, topics.invalid_events],
        PARTITIONS,
    )
    try:
        records = reader.wait_until(
            lambda rs: (
                len(_values(rs, topics.bookmarks)) >= 3
                and len(_values(rs, topics.match_review)) >= 1
                and any(r.topic == topics.invalid_events for r in rs)
            ),
            timeout=90,
            settle=3,
        )
        bookmarks = [Bookmark.model_validate(v) for v in _values(records, topics.bookmarks)]
        by_id = {b.bookmark_id: b for b in bookmarks}
        assert len(bookmarks) == 3, [b.match.strategy for b in bookmarks]
        domain_bookmark = by_id[bookmark_id_for(by_domain.inbound_id)]
        assert (domain_bookmark.company_id, domain_bookmark.match.strategy) == (
            "co_domain",
            "domain",
        )
        linked_bookmark = by_id[bookmark_id_for(linked.inbound_id)]
        assert (linked_bookmark.company_id, linked_bookmark.match.strategy) == (
            "co_linked",
            "partner_id",
        )
        assert linked_bookmark.match.confidence == 1.0
        assert linked_bookmark.source.partner_object_id == "hs_501"
        assert by_id[bookmark_id_for(after_poison.inbound_id)].company_id == "co_linked"
        (dead,) = [r for r in records if r.topic == topics.invalid_events]
        assert dead.header("qi.error.reason") == "validation_failed"
        assert dead.header("qi.original.topic") == topics.inbound
        (review_record,) = _values(records, topics.match_review)
        assert review_record["reason"] == "ambiguous"

        async def counted() -> bool:
            outcomes = {
                "duplicate": 4,
                "bookmark.domain": 2,
                "bookmark.partner_id": 1,
                "review.ambiguous": 1,
                "dead_letter.validation_failed": 1,
            }
            return all(
                worker.metric("qi_inbound_resolved_total", outcome=outcome) == count
                for outcome, count in outcomes.items()
            )

        await _wait_for(counted, seconds=30)

        # the review, through the API
        listed = await client.get(f"/v1/tenants/{TENANT}/inbound/reviews", headers=TENANT_ADMIN)
        assert listed.status_code == 200, listed.text
        (review,) = [InboundReview.model_validate(r) for r in listed.json()["items"]]
        assert review.status == "pending"
        assert {c.company_id for c in review.candidates} == {"co_nordic_1", "co_nordic_2"}
        assert all(c.strategy == "company_name" for c in review.candidates)
        path = f"/v1/tenants/{TENANT}/inbound/reviews/{review.review_id}/resolve"

        other = await client.post(path, json={"company_id": "co_nordic_2"}, headers=OTHER_ADMIN)
        assert other.status_code == 403
        unknown = await client.post(path, json={"company_id": "co_nope"}, headers=TENANT_ADMIN)
        assert unknown.status_code == 400
        assert unknown.json()["error"]["code"] == "unknown_company"

        first = await client.post(path, json={"company_id": "co_nordic_2"}, headers=TENANT_ADMIN)
        assert first.status_code == 200, first.text
        again = await client.post(path, json={"company_id": "co_nordic_2"}, headers=PLATFORM)
        assert again.status_code == 200
        assert again.json()["bookmark"] == first.json()["bookmark"]
        changed = await client.post(path, json={"company_id": "co_nordic_1"}, headers=TENANT_ADMIN)
        assert changed.status_code == 409
        rejected = await client.post(path, json={"reject": True}, headers=TENANT_ADMIN)
        assert rejected.status_code == 409

        records = reader.wait_until(
            lambda rs: len(_values(rs, topics.bookmarks)) >= 4, timeout=30, settle=3
        )
        bookmarks = [Bookmark.model_validate(v) for v in _values(records, topics.bookmarks)]
        assert len(bookmarks) == 4
        (manual,) = [b for b in bookmarks if b.match.strategy == "manual"]
        assert manual.company_id == "co_nordic_2"
        assert manual.bookmark_id == bookmark_id_for(shared.inbound_id)
        assert manual.match.decided_by == "user-1"
        listed = await client.get(f"/v1/tenants/{TENANT}/inbound/reviews", headers=TENANT_ADMIN)
        (decided,) = listed.json()["items"]
        assert decided["status"] == "resolved"
    finally:
        reader.close()


async def _seed_review(redis_client: Redis, settings: Settings, tenant_id: str) -> str:
    prefix = settings.redis.key_prefix
    directory = CompanyDirectory(redis_client, key_prefix=prefix)
    update = directory_update(_company_event(tenant_id, COMPANIES[1]))
    assert update is not None
    await directory.apply(update)
    event = _inbound(name="Nordic Widgets").model_copy(update={"tenant_id": tenant_id})
    review = InboundReview(
        review_id=f"rv_{uuid.uuid4().hex}",
        tenant_id=tenant_id,
        reason="ambiguous",
        explanation="",
        event=event,
        created_at=datetime.now(UTC),
    )
    assert await ReviewStore(redis_client, key_prefix=prefix).add(review)
    return review.review_id


async def test_a_review_of_another_tenant_cannot_be_seen_or_decided(
    settings: Settings, redis_client: Redis, client: httpx.AsyncClient
) -> None:
    review_id = await _seed_review(redis_client, settings, OTHER_TENANT)
    mine = f"/v1/tenants/{TENANT}/inbound/reviews"
    theirs = f"/v1/tenants/{OTHER_TENANT}/inbound/reviews"
    # a tenant admin naming the other tenant: 403, nothing read or changed
    assert (await client.get(theirs, headers=TENANT_ADMIN)).status_code == 403
    forbidden = await client.post(
        f"{theirs}/{review_id}/resolve", json={"reject": True}, headers=TENANT_ADMIN
    )
    assert forbidden.status_code == 403
    # the other tenant's review id under the own tenant: 404
    missing = await client.post(
        f"{mine}/{review_id}/resolve", json={"company_id": "co_nordic_1"}, headers=TENANT_ADMIN
    )
    assert missing.status_code == 404
    assert (await client.get(mine, headers=TENANT_ADMIN)).json()["items"] == []
    # no token, a forged token: 401
    assert (await client.get(theirs)).status_code == 401
    forged = {"Authorization": "Bearer " + "e30.e30.forged"}
    assert (await client.get(theirs, headers=forged)).status_code == 401
    # malformed bodies and ids: 4xx
    bodies: list[Any] = [{}, {"company_id": "co_nordic_1", "reject": True}, {"reject": False}, []]
    for body in bodies:
        bad = await client.post(f"{theirs}/{review_id}/resolve", json=body, headers=OTHER_ADMIN)
        assert bad.status_code == 422, body
    oversized = await client.post(
        f"{theirs}/{review_id}/resolve",
        content=b'{"company_id": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}',
        headers={**OTHER_ADMIN, "Content-Type": "application/json"},
    )
    assert oversized.status_code == 413
    bad_id = await client.post(f"{theirs}/rv_x/resolve", json={"reject": True}, headers=OTHER_ADMIN)
    assert bad_id.status_code == 422
    cursor = await client.get(theirs, params={"cursor": "bm90LWEtY3Vyc29y"}, headers=OTHER_ADMIN)
    assert cursor.status_code == 400
    # nothing changed: the review is still pending for its own tenant
    listed = await client.get(theirs, headers=OTHER_ADMIN)
    (review,) = listed.json()["items"]
    assert review["status"] == "pending"
    rejected = await client.post(
        f"{theirs}/{review_id}/resolve", json={"reject": True}, headers=OTHER_ADMIN
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["bookmark"] is None


async def test_reviews_are_paged_pending_first(
    settings: Settings, redis_client: Redis, client: httpx.AsyncClient
) -> None:
    ids = [await _seed_review(redis_client, settings, TENANT) for _ in range(5)]
    path = f"/v1/tenants/{TENANT}/inbound/reviews"
    decided = await client.post(
        f"{path}/{ids[0]}/resolve", json={"reject": True}, headers=TENANT_ADMIN
    )
    assert decided.status_code == 200
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get(path, params=params, headers=TENANT_ADMIN)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(r["review_id"] for r in seen) == sorted(ids)
    assert [r["status"] for r in seen] == ["pending"] * 4 + ["rejected"]


async def test_a_resolve_that_kafka_refuses_decides_nothing_and_concurrent_ones_produce_once(
    settings: Settings, redis_client: Redis
) -> None:
    prefix = settings.redis.key_prefix
    review_id = await _seed_review(redis_client, settings, TENANT)
    produced: list[Bookmark] = []
    refuse = True

    async def produce(bookmark: Bookmark) -> None:
        if refuse:
            raise ServiceUnavailable("down", code="kafka_unavailable")
        await asyncio.sleep(0.2)  # long enough for the other resolve to find the claim
        produced.append(bookmark)

    service = InboundReviewService(
        store=ReviewStore(redis_client, key_prefix=prefix),
        directory=CompanyDirectory(redis_client, key_prefix=prefix),
        marks=BookmarkMarks(redis_client, key_prefix=prefix),
        produce=produce,
    )
    with pytest.raises(ServiceUnavailable):
        await service.resolve(TENANT, review_id, "co_nordic_1", decided_by="u")
    pending = await ReviewStore(redis_client, key_prefix=prefix).get(TENANT, review_id)
    assert pending is not None
    assert pending.status == "pending"

    refuse = False
    outcomes = await asyncio.gather(
        service.resolve(TENANT, review_id, "co_nordic_1", decided_by="u"),
        service.resolve(TENANT, review_id, "co_nordic_1", decided_by="u"),
        return_exceptions=True,
    )
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    decided = [o for o in outcomes if isinstance(o, InboundReview)]
    assert len(conflicts) == 1
    assert conflicts[0].code == "review_in_progress"
    assert len(decided) == 1
    assert len(produced) == 1
    again = await service.resolve(TENANT, review_id, "co_nordic_1", decided_by="u")
    assert again.bookmark == produced[0]
    assert len(produced) == 1
