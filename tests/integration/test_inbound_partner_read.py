"""A HubSpot highlight for an unlinked company: the worker reads the company from the HubSpot
sandbox with the connection's token and matches it against the tenant's directory."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from connectors.base.inbound import InboundCompany
from processors.inbound.directory import CompanyDirectory, directory_update
from processors.inbound.models import Bookmark, InboundEvent, InboundReview
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.partners import connect, partner_env
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

TENANT = "t_inread"
TOKEN = "pat-na1-inbound-reader"


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _company_upserted(company_id: str, **data: str) -> bytes:
    """A ``company.upserted`` domain event of the tenant, as its source sends it."""
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "company.upserted",
            "schema_version": "1.0",
            "tenant_id": TENANT,
            "occurred_at": "2026-12-04T09:00:00Z",
            "data": {"company_id": company_id, "version": 1, **data},
        }
    ).encode()


def _highlight(connection_id: str, partner_object_id: str) -> InboundEvent:
    return InboundEvent(
        inbound_id=f"in_{uuid.uuid4().hex}",
        tenant_id=TENANT,
        connector="hubspot",
        connection_id=connection_id,
        partner_event_id=f"evt-{uuid.uuid4().hex[:12]}",
        company=InboundCompany(partner_object_id=partner_object_id),
        received_at=datetime.now(UTC),
        correlation_id=str(uuid.uuid4()),
    )


async def test_an_unlinked_hubspot_company_is_read_and_bookmarked_by_domain(
    hubspot: HubSpotSandbox,
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    redis: Redis,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    portal = hubspot.add_portal(private_app_token=TOKEN)
    object_id = hubspot.state.seed(
        portal, "companies", {"name": "Acme Robotics (HubSpot spelling)", "domain": "acme.se"}
    )
    connection = await connect(
        repository,
        settings,
        TENANT,
        "hubspot",
        {"auth": {"type": "private_app", "token": TOKEN}},
    )
    directory = CompanyDirectory(redis, key_prefix=settings.redis.key_prefix)
    for company_id, fields in (
        ("co_acme", {"name": "Acme Robotics AB", "domain": "www.acme.se"}),
        ("co_other", {"name": "Other Co", "domain": "other.se"}),
    ):
        update = directory_update(_company_upserted(company_id, **fields))
        assert update is not None
        await directory.apply(update)

    found = _highlight(connection.connection_id, object_id)
    missing = _highlight(connection.connection_id, "999999999")
    produce(
        settings.kafka.bootstrap_servers,
        topics.inbound,
        [(TENANT.encode(), e.model_dump_json().encode()) for e in (found, missing)],
    )
    start_worker(worker_factory, partner_env(qi_env, connectors=[], hubspot=hubspot), tmp_path)

    reader = TopicReader(
        settings.kafka.bootstrap_servers, [topics.bookmarks, topics.match_review], PARTITIONS
    )
    try:

        def both(records: list[ConsumedRecord]) -> bool:
            return len(records) >= 2

        records = reader.wait_until(both, timeout=120, settle=2.0)
    finally:
        reader.close()
    bookmarks = [
        Bookmark.model_validate_json(r.value or b"") for r in records if r.topic == topics.bookmarks
    ]
    reviews = [
        InboundReview.model_validate_json(r.value or b"")
        for r in records
        if r.topic == topics.match_review
    ]
    assert [(b.company_id, b.match.strategy) for b in bookmarks] == [("co_acme", "domain")]
    assert bookmarks[0].source.partner_object_id == object_id
    assert [(r.reason, r.event.inbound_id) for r in reviews] == [
        ("partner_object_not_found", missing.inbound_id)
    ]
    paths = [(e.method, e.path) for e in hubspot.state.requests(portal)]
    assert ("GET", f"/crm/v3/objects/companies/{object_id}") in paths
