"""HubSpot and Pipedrive connections end to end: real worker, Kafka, Redis and partner sandboxes."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from processors.identity.repository import IdentityRepository
from processors.samples import sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.support.kafka_io import TopicReader, produce
from tests.support.worker import WorkerProcess

TERMINAL = {"delivered", "dead_lettered", "stale_skipped", "duplicate_skipped", "held_for_review"}


@pytest.fixture
def hubspot() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as sandbox:
        yield sandbox


async def test_companies_people_and_signals_land_once_in_hubspot_with_mappings(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    tmp_path: Path,
) -> None:
    tenants = ["t_hs_a", "t_hs_b"]
    portals: dict[str, int] = {}
    box = settings.secrets.secret_box()
    for n, tenant in enumerate(tenants):
        token = f"pat-na1-{tenant}-{n}"
        portals[tenant] = hubspot.add_portal(private_app_token=token)
        connection = ConnectionRecord.model_validate(
            {"tenant_id": tenant, "connector": "hubspot", "connection_id": f"conn_{tenant}"}
        )
        sealed = seal_settings(
            {"auth": {"type": "private_app", "token": token}},
            box=box,
            tenant_id=tenant,
            connection_id=connection.connection_id,
        )
        await repository.allow(tenant)
        await repository.put(connection.model_copy(update={"settings": sealed}))
    generated = [
        e for e in sample_events(tenants, 600, seed=71) if not e["event_type"].endswith(".deleted")
    ]
    exported = {
        (e["tenant_id"], e["data"]["company_id"])
        for e in generated
        if e["event_type"] == "company.upserted"
    }
    # notes need their company in HubSpot: keep signals and job ads of exported companies
    events = [
        e
        for e in generated
        if e["event_type"] not in {"signal.emitted", "job_ad.published"}
        or (e["tenant_id"], e["data"]["company_id"]) in exported
    ]
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )
    env = {
        **qi_env,
        "QI_WORKER_DELIVERY_CONNECTORS": '["hubspot"]',
        "QI_HUBSPOT_BASE_URL": hubspot.url,
        "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
        "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "1",
        "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "20",
    }
    start_worker(worker_factory, env, tmp_path)

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)
    wanted = len(events)

    def settled(records: list[Any]) -> bool:
        keys = {
            json.loads(r.value)["idempotency_key"]
            for r in records
            if json.loads(r.value)["status"] in TERMINAL
        }
        return len(keys) >= wanted

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not settled(reader.records):
        await asyncio.to_thread(reader.poll_for, 1.0)
    reader.close()
    outcomes = Counter(json.loads(r.value or b"{}")["status"] for r in reader.records)
    assert settled(reader.records), outcomes
    assert outcomes["dead_lettered"] == 0, outcomes

    client = Redis.from_url(settings.redis.url)
    identity = IdentityRepository(client, key_prefix=settings.redis.key_prefix)
    try:
        for tenant in tenants:
            portal = portals[tenant]
            companies = hubspot.objects(portal, "companies")
            contacts = hubspot.objects(portal, "contacts")
            sent_companies = {
                e["data"]["company_id"]
                for e in events
                if e["tenant_id"] == tenant and e["event_type"] == "company.upserted"
            }
            sent_people = {
                e["data"]["person_id"]
                for e in events
                if e["tenant_id"] == tenant and e["event_type"] == "person.upserted"
            }
            stored = Counter(c["properties"].get("queast_id") for c in companies)
            assert set(stored) == sent_companies, "each company once, with its Queast id"
            assert max(stored.values()) == 1
            people = Counter(c["properties"].get("queast_id") for c in contacts)
            assert set(people) == sent_people
            assert max(people.values()) == 1
            links = {
                link.queast_id: link for link in await identity.links(f"conn_{tenant}", "company")
            }
            assert set(links) == sent_companies
            by_id = {c["id"]: c for c in companies}
            for queast_id, link in links.items():
                assert by_id[link.partner_object_id]["properties"]["queast_id"] == queast_id
            assert hubspot.state.all_associations(portal), "contacts and notes associated"
            print(
                f"{tenant}: {len(companies)} companies, {len(contacts)} contacts, "
                f"{len(hubspot.state.all_associations(portal))} associations; {dict(outcomes)}"
            )
    finally:
        await client.aclose()
