"""A first sync into both CRMs: 2,000 companies and 5,000 people over 5 tenants.

Real worker, Kafka and Redis; the HubSpot and Pipedrive sandboxes. Every tenant has a HubSpot
and a Pipedrive connection, and each CRM already holds some of the tenant's companies and
people (made by its users: by domain, LinkedIn page, name or e-mail, without a Queast id).
Everything must land once: the pre-existing objects linked and updated, the others created,
each person associated with its company, and every link in the identity store with the
strategy that made it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from processors.samples import sample_sync
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import start_worker
from tests.integration.partners import (
    connect,
    delivery_reader,
    identity_store,
    partner_env,
    poll_until,
    publish,
)
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.pipedrive import PipedriveSandbox
from tests.support.worker import WorkerProcess

TENANTS = [f"t_sync_{n}" for n in range(5)]
COMPANIES, PEOPLE = 400, 1000  # per tenant: 2,000 and 5,000 in all
BY_DOMAIN, BY_LINKEDIN, BY_NAME, BY_EMAIL = range(40), range(40, 60), range(60, 80), range(100)
TERMINAL = {"delivered", "dead_lettered", "held_for_review"}


def _seed_hubspot(hubspot: HubSpotSandbox, portal: int, events: list[dict[str, Any]]) -> None:
    for event in events:
        data = event["data"]
        index = int(data.get("company_id", "co_-1").split("_")[1])
        if event["event_type"] == "company.upserted":
            if index in BY_DOMAIN:
                hubspot.seed(portal, "companies", {"name": data["name"], "domain": data["domain"]})
            elif index in BY_LINKEDIN:
                hubspot.seed(
                    portal,
                    "companies",
                    {
                        "name": f"{data['name']} Nordic",
                        "linkedin_company_page": data["linkedin_url"],
                    },
                )
            elif index in BY_NAME:
                hubspot.seed(portal, "companies", {"name": data["name"]})
        elif int(data["person_id"].split("_")[1]) in BY_EMAIL:
            hubspot.seed(
                portal,
                "contacts",
                {
                    "email": data["email"],
                    "firstname": data["first_name"],
                    "lastname": data["last_name"],
                },
            )


def _seed_pipedrive(
    pipedrive: PipedriveSandbox, account: str, events: list[dict[str, Any]]
) -> None:
    for event in events:
        data = event["data"]
        if event["event_type"] == "company.upserted":
            index = int(data["company_id"].split("_")[1])
            if index in BY_DOMAIN:
                pipedrive.seed_organization(account, name=data["name"], domain=data["domain"])
            elif index in BY_NAME:
                pipedrive.seed_organization(account, name=data["name"])
        elif int(data["person_id"].split("_")[1]) in BY_EMAIL:
            pipedrive.seed_person(account, name=data["full_name"], emails=[data["email"]])


async def test_a_first_sync_lands_once_in_both_crms_with_associations_and_links(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    pipedrive: PipedriveSandbox,
    tmp_path: Path,
) -> None:
    events = sample_sync(TENANTS, companies=COMPANIES, people=PEOPLE, seed=91)
    portals: dict[str, int] = {}
    pd_fields: dict[str, str] = {}
    for n, tenant in enumerate(TENANTS):
        own = [e for e in events if e["tenant_id"] == tenant]
        hs_token = f"pat-na1-sync-{n}"
        portals[tenant] = hubspot.add_portal(private_app_token=hs_token)
        _seed_hubspot(hubspot, portals[tenant], own)
        await connect(
            repository,
            settings,
            tenant,
            "hubspot",
            {"auth": {"type": "private_app", "token": hs_token}},
            connection_id=f"conn_hubspot_{tenant}",
        )
        pd_token = f"pd-sync-token-{n}"
        info = pipedrive.add_account(tenant, api_tokens=[pd_token])
        pd_fields[tenant] = info.queast_id_field_key
        pipedrive.set_limits(tenant, api_token_burst=120, daily_budget=210_000)
        _seed_pipedrive(pipedrive, tenant, own)
        await connect(
            repository,
            settings,
            tenant,
            "pipedrive",
            {
                "auth": {"type": "api_token", "token": pd_token},
                "domain_field_key": info.domain_field_key,
                "queast_id_field_key": info.queast_id_field_key,
                "plan": "ultimate",
            },
            connection_id=f"conn_pipedrive_{tenant}",
        )
    publish(settings, topics, events)
    env = partner_env(
        qi_env,
        connectors=["hubspot", "pipedrive"],
        hubspot=hubspot,
        pipedrive=pipedrive,
        QI_DELIVERY_RETRY_MAX_DELAY_SECONDS="2",
        QI_DELIVERY_RETRY_MAX_ATTEMPTS="30",
    )
    started = time.monotonic()
    start_worker(worker_factory, env, tmp_path)

    reader = delivery_reader(settings, topics)
    wanted = {(connector, e["event_id"]) for e in events for connector in ("hubspot", "pipedrive")}
    settled: set[tuple[str, str]] = set()
    outcomes: Counter[str] = Counter()
    seen = 0

    def all_settled() -> bool:
        nonlocal seen
        for record in reader.records[seen:]:
            body = json.loads(record.value or b"{}")
            outcomes[f"{body['connector']}:{body['status']}"] += 1
            if body["status"] in TERMINAL:
                settled.add((body["connector"], body["event_id"]))
        seen = len(reader.records)
        return wanted <= settled

    await poll_until(reader, all_settled, within=420)
    elapsed = time.monotonic() - started
    reader.close()
    assert wanted <= settled, (len(wanted - settled), outcomes)
    assert not [k for k in outcomes if k.endswith(("dead_lettered", "held_for_review"))], outcomes

    strategies: Counter[str] = Counter()
    async with identity_store(settings) as identity:
        for tenant in TENANTS:
            own = [e for e in events if e["tenant_id"] == tenant]
            company_ids = {
                e["data"]["company_id"] for e in own if e["event_type"] == "company.upserted"
            }
            person_company = {
                e["data"]["person_id"]: e["data"]["company_id"]
                for e in own
                if e["event_type"] == "person.upserted"
            }
            # -- HubSpot: one object per entity (pre-existing ones linked, not duplicated)
            portal = portals[tenant]
            companies = hubspot.objects(portal, "companies")
            contacts = hubspot.objects(portal, "contacts")
            assert len(companies) == COMPANIES, "no duplicate of a pre-existing company"
            assert len(contacts) == PEOPLE
            assert {c["properties"].get("queast_id") for c in companies} == company_ids
            assert {c["properties"].get("queast_id") for c in contacts} == set(person_company)
            hs_company = {c["properties"]["queast_id"]: c["id"] for c in companies}
            for contact in contacts:
                expected = hs_company[person_company[contact["properties"]["queast_id"]]]
                linked = [
                    to
                    for to, _ in hubspot.associations(
                        portal, "contacts", contact["id"], "companies"
                    )
                ]
                assert linked == [expected], contact["properties"]["queast_id"]
            # -- Pipedrive
            orgs = pipedrive.organizations(tenant)
            persons = pipedrive.persons(tenant)
            queast_field = pd_fields[tenant]
            assert len(orgs) == COMPANIES, "no duplicate of a pre-existing organization"
            assert len(persons) == PEOPLE
            pd_org = {o["custom_fields"][queast_field]: o["id"] for o in orgs}
            assert set(pd_org) == company_ids
            for person in persons:
                queast_id = person["custom_fields"][queast_field]
                assert person["org_id"] == pd_org[person_company[queast_id]], queast_id
            # -- the identity store: every entity linked in both connections
            for connector, objects in (("hubspot", hs_company), ("pipedrive", pd_org)):
                connection_id = f"conn_{connector}_{tenant}"
                links = await identity.links(connection_id, "company")
                assert {link.queast_id: link.partner_object_id for link in links} == {
                    k: str(v) for k, v in objects.items()
                }
                people_links = await identity.links(connection_id, "person")
                assert {link.queast_id for link in people_links} == set(person_company)
                for link in [*links, *people_links]:
                    strategies[f"{connector}:{link.kind}:{link.strategy}"] += 1
    print(f"first sync of {len(events)} events into 2 CRMs settled in {elapsed:.0f} s")
    print(f"delivery records: {dict(sorted(outcomes.items()))}")
    print(f"links by strategy: {dict(sorted(strategies.items()))}")
    for n, tenant in enumerate(TENANTS[:1]):
        print(f"hubspot portal {n} requests: {hubspot.stats(portals[tenant]).by_status}")
    print(f"pipedrive: {pipedrive.stats()}")
