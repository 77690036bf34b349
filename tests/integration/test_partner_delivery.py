"""HubSpot and Pipedrive connections end to end: real worker, Kafka, Redis and partner sandboxes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from processors.samples import sample_events
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
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.support.worker import WorkerProcess


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
    for n, tenant in enumerate(tenants):
        token = f"pat-na1-{tenant}-{n}"
        portals[tenant] = hubspot.add_portal(private_app_token=token)
        await connect(
            repository,
            settings,
            tenant,
            "hubspot",
            {"auth": {"type": "private_app", "token": token}},
        )
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
    publish(settings, topics, events)
    env = partner_env(qi_env, connectors=["hubspot"], hubspot=hubspot)
    start_worker(worker_factory, env, tmp_path)

    reader = delivery_reader(settings, topics)
    wanted = len(events)

    def settled(records: list[Any]) -> bool:
        keys = {
            json.loads(r.value)["idempotency_key"]
            for r in records
            if json.loads(r.value)["status"] in TERMINAL
        }
        return len(keys) >= wanted

    await poll_until(reader, lambda: settled(reader.records), within=180)
    reader.close()
    outcomes = Counter(json.loads(r.value or b"{}")["status"] for r in reader.records)
    assert settled(reader.records), outcomes
    assert outcomes["dead_lettered"] == 0, outcomes

    async with identity_store(settings) as identity:
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
