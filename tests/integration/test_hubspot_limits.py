"""HubSpot at its burst limit: the real worker, Kafka, Redis and a sandbox portal limited to
100 requests per 10 s, with first-link lookups batched into few searches."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from processors.identity.repository import IdentityLink, LinkState
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import start_worker
from tests.integration.partners import (
    TERMINAL,
    connect,
    delivery_reader,
    identity_store,
    partner_env,
    poll_until,
    publish,
)
from tests.sandboxes.hubspot import HubSpotSandbox, PortalLimits
from tests.support.worker import WorkerProcess

TENANT = "t_hs_limits"
CONNECTION = f"conn_{TENANT}"
TOKEN = "pat-na1-limits"
LINKED = 3_500  # linked before the test: updates by id
NEW = 1_000  # not linked: looked up first; every fifth exists in the portal by domain


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
    await connect(
        repository,
        settings,
        TENANT,
        "hubspot",
        {"auth": {"type": "private_app", "token": TOKEN}},
        connection_id=CONNECTION,
    )
    async with identity_store(settings) as identity:
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
    # 4,500 records need at least 45 full writes whatever the machine's pace, so a burst
    # limit of 40 writes per 10 s is always in play (at 100 it was only on a calm machine).
    limits = PortalLimits(burst_max=40, interval_ms=10_000, search_per_second=5, daily=None)
    portal = hubspot.add_portal(private_app_token=TOKEN, limits=limits)
    existing = await _seed(settings, repository, hubspot, portal)
    events = [_event(index) for index in range(LINKED + NEW)]
    publish(settings, topics, events)  # every event's tenant is TENANT
    env = partner_env(
        qi_env,
        connectors=["hubspot"],
        hubspot=hubspot,
        # Queues of two batches (instead of ten) make more, smaller writes, so the burst
        # limit is reached with a few thousand events.
        QI_DELIVERY_LANE_BATCHES="2",
    )
    start_worker(worker_factory, env, tmp_path)

    reader = delivery_reader(settings, topics)

    def terminal() -> Counter[str]:
        records = [json.loads(r.value or b"{}") for r in reader.records]
        return Counter(r["idempotency_key"] for r in records if r["status"] in TERMINAL)

    await poll_until(reader, lambda: len(terminal()) >= len(events), within=90)
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
