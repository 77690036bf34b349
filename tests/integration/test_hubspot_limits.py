"""HubSpot at its burst limit: the real worker, Kafka, Redis and a sandbox portal limited to
100 requests per 10 s, with first-link lookups batched into few searches."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from processors.identity.repository import IdentityLink, IdentityRepository, LinkState
from processors.samples import to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.sandboxes.hubspot import HubSpotSandbox, PortalLimits
from tests.support.kafka_io import TopicReader, produce
from tests.support.worker import WorkerProcess

TENANT = "t_hs_limits"
CONNECTION = f"conn_{TENANT}"
TOKEN = "pat-na1-limits"
LINKED = 3_500  # linked before the test: updates by id
NEW = 1_000  # not linked: looked up first; every fifth exists in the portal by domain
TERMINAL = {"delivered", "dead_lettered", "stale_skipped", "duplicate_skipped", "held_for_review"}


@pytest.fixture
def hubspot() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as sandbox:
        yield sandbox


def _company(index: int) -> dict[str, Any]:
    return {
        "company_id": f"co_{index}",
        "name": f"Firm {index} AB",
        "domain": f"firm{index}.com",
        "domains": [f"firm{index}.com"],
        "linkedin_url": f"https://www.linkedin.com/company/firm-{index}",
        "version": 1,
    }


def _event(index: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "company.upserted",
        "schema_version": "1.0",
        "tenant_id": TENANT,
        "occurred_at": "2026-11-26T05:00:00Z",
        "data": _company(index),
    }


async def _seed(
    settings: Settings, repository: ConnectionRepository, hubspot: HubSpotSandbox, portal: int
) -> dict[str, str]:
    """The connection, the linked companies (in the portal and in Redis) and the companies
    that exist in the portal unlinked; returns Queast id -> object id of the latter."""
    sealed = seal_settings(
        {"auth": {"type": "private_app", "token": TOKEN}},
        box=settings.secrets.secret_box(),
        tenant_id=TENANT,
        connection_id=CONNECTION,
    )
    connection = ConnectionRecord.model_validate(
        {"tenant_id": TENANT, "connector": "hubspot", "connection_id": CONNECTION}
    )
    await repository.allow(TENANT)
    await repository.put(connection.model_copy(update={"settings": sealed}))
    client = Redis.from_url(settings.redis.url)
    identity = IdentityRepository(client, key_prefix=settings.redis.key_prefix)
    try:
        for index in range(LINKED):
            object_id = hubspot.seed(
                portal, "companies", {"name": f"Firm {index}", "queast_id": f"co_{index}"}
            )
            await identity.put(
                IdentityLink(
                    tenant_id=TENANT,
                    connection_id=CONNECTION,
                    kind="company",
                    queast_id=f"co_{index}",
                    partner_object_id=object_id,
                    state=LinkState.CREATED,
                    strategy="created",
                    confidence=1.0,
                )
            )
    finally:
        await client.aclose()
    return {
        f"co_{index}": hubspot.seed(
            portal, "companies", {"name": f"Firm {index} (CRM)", "domain": f"firm{index}.com"}
        )
        for index in range(LINKED, LINKED + NEW, 5)
    }


async def test_a_portal_at_its_burst_limit_gets_every_company_once_with_few_429s(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    tmp_path: Path,
) -> None:
    limits = PortalLimits(burst_max=100, interval_ms=10_000, search_per_second=5, daily=None)
    portal = hubspot.add_portal(private_app_token=TOKEN, limits=limits)
    existing = await _seed(settings, repository, hubspot, portal)
    events = [_event(index) for index in range(LINKED + NEW)]
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((TENANT.encode(), to_json_line(e)) for e in events),
    )
    env = {
        **qi_env,
        "QI_WORKER_DELIVERY_CONNECTORS": '["hubspot"]',
        "QI_HUBSPOT_BASE_URL": hubspot.url,
        "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
        "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "1",
        "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "20",
        # Queues of two batches (instead of ten) make more, smaller writes, so the burst
        # limit is reached with a few thousand events.
        "QI_DELIVERY_LANE_BATCHES": "2",
    }
    start_worker(worker_factory, env, tmp_path)

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    def terminal() -> Counter[str]:
        records = [json.loads(r.value or b"{}") for r in reader.records]
        return Counter(r["idempotency_key"] for r in records if r["status"] in TERMINAL)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(terminal()) < len(events):
        await asyncio.to_thread(reader.poll_for, 1.0)
    reader.close()
    records = [json.loads(r.value or b"{}") for r in reader.records]
    outcomes = Counter(r["status"] for r in records)
    delivered = Counter(r["idempotency_key"] for r in records if r["status"] == "delivered")
    assert len(delivered) == len(events), outcomes
    assert set(delivered.values()) == {1}, "each record delivered once"
    assert set(terminal().values()) == {1}, outcomes

    companies = hubspot.objects(portal, "companies")
    by_queast_id = Counter(c["properties"].get("queast_id") for c in companies)
    assert len(companies) == LINKED + NEW, "nothing created twice"
    assert set(by_queast_id) == {f"co_{i}" for i in range(LINKED + NEW)}
    assert set(by_queast_id.values()) == {1}
    by_id = {c["id"]: c for c in companies}
    for queast_id, object_id in existing.items():
        assert by_id[object_id]["properties"]["queast_id"] == queast_id, "linked by lookup"

    entries = hubspot.requests(portal)
    throttled = sum(1 for e in entries if e.status == 429)
    writes = [e for e in entries if "/batch/" in e.path and e.status in (200, 207)]
    searches = [e for e in entries if e.path.endswith("/search") and e.status == 200]
    print(
        f"{len(entries)} requests ({len(writes)} writes, {len(searches)} searches, "
        f"{throttled} answered 429); {sum(e.inputs for e in writes)} records written; "
        f"{sum(e.search_values for e in searches)} values looked up; {dict(outcomes)}"
    )
    assert len(writes) > limits.burst_max, "the burst limit was in play"
    assert throttled < 0.01 * len(entries)
    # lookups batched: ten or more companies per search request (five, in EQ groups,
    # before), however the worker happened to batch them
    assert len(searches) <= NEW // 10
