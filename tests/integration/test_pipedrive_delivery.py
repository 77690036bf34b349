"""Pipedrive end to end: the real worker, Kafka, Redis and the Pipedrive sandbox.

Two tenants, each with its own Pipedrive account that already holds some of the tenant's
companies (by domain, made by its users without a Queast id) and people (by e-mail). Their
companies go first, then their people and signals. Everything must land once: the
pre-existing objects linked and updated rather than duplicated, the others created, each
person in its company's organization, each signal a note on it, every link in the identity
store; and first links found through the candidate index (list pages), not a search per
entity.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from processors.samples import sample_events, sample_sync
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
from tests.sandboxes.pipedrive import PipedriveSandbox
from tests.support.kafka_io import TopicReader
from tests.support.worker import WorkerProcess

TENANTS = ["t_pd_a", "t_pd_b"]
COMPANIES, PEOPLE = 60, 150  # per tenant


def _index(entity_id: str) -> int:
    return int(entity_id.split("_")[1])


def _seed(pipedrive: PipedriveSandbox, account: str, events: list[dict[str, Any]]) -> None:
    """Every 5th company (by domain, another name) and every 10th person (by e-mail)."""
    for event in events:
        data = event["data"]
        if event["event_type"] == "company.upserted" and _index(data["company_id"]) % 5 == 0:
            pipedrive.seed_organization(
                account, name=f"{data['name']} (CRM)", domain=data["domain"]
            )
        if event["event_type"] == "person.upserted" and _index(data["person_id"]) % 10 == 0:
            pipedrive.seed_person(account, name=data["full_name"], emails=[data["email"]])


async def _settle(
    reader: TopicReader, wanted: set[str], outcomes: Counter[str], *, seconds: float
) -> set[str]:
    """Read delivery records until every event id of ``wanted`` has a terminal one."""
    settled: set[str] = set()
    seen = 0

    def all_settled() -> bool:
        nonlocal seen
        for record in reader.records[seen:]:
            body = json.loads(record.value or b"{}")
            if body["event_id"] in wanted:
                outcomes[body["status"]] += 1
                if body["status"] in TERMINAL:
                    settled.add(body["event_id"])
        seen = len(reader.records)
        return wanted <= settled

    await poll_until(reader, all_settled, within=seconds, step=0.5)
    return settled


async def test_companies_people_and_signals_land_once_in_pipedrive_with_links(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    pipedrive: PipedriveSandbox,
    tmp_path: Path,
) -> None:
    sync = sample_sync(TENANTS, companies=COMPANIES, people=PEOPLE, seed=23)
    signals = [
        e for e in sample_events(TENANTS, 200, seed=29) if e["event_type"] == "signal.emitted"
    ]
    queast_fields: dict[str, str] = {}
    for n, tenant in enumerate(TENANTS):
        token = f"pd-token-{tenant}-{n}"
        info = pipedrive.add_account(tenant, api_tokens=[token])
        pipedrive.set_limits(tenant, api_token_burst=120, daily_budget=100_000)
        queast_fields[tenant] = info.queast_id_field_key
        _seed(pipedrive, tenant, [e for e in sync if e["tenant_id"] == tenant])
        await connect(
            repository,
            settings,
            tenant,
            "pipedrive",
            {
                "auth": {"type": "api_token", "token": token},
                "domain_field_key": info.domain_field_key,
                "queast_id_field_key": info.queast_id_field_key,
                "plan": "ultimate",
            },
        )
    companies = [e for e in sync if e["event_type"] == "company.upserted"]
    later = [e for e in sync if e["event_type"] == "person.upserted"] + signals

    env = partner_env(qi_env, connectors=["pipedrive"], pipedrive=pipedrive)
    reader = delivery_reader(settings, topics)
    outcomes: Counter[str] = Counter()
    try:
        publish(settings, topics, companies)
        start_worker(worker_factory, env, tmp_path)
        wanted = {e["event_id"] for e in companies}
        settled = await _settle(reader, wanted, outcomes, seconds=40)
        assert wanted <= settled, (len(wanted - settled), outcomes)
        # people and signals once their companies are in Pipedrive: org_id and notes
        publish(settings, topics, later)
        wanted = {e["event_id"] for e in later}
        settled = await _settle(reader, wanted, outcomes, seconds=30)
        assert wanted <= settled, (len(wanted - settled), outcomes)
    finally:
        reader.close()
    assert set(outcomes) <= {"delivered", "retry_scheduled", "deferred"}, outcomes

    stats = pipedrive.stats()
    assert "GET /api/v2/organizations/search" not in stats.by_route, "first links from the index"
    assert "GET /api/v2/persons/search" not in stats.by_route
    assert stats.by_route["GET /api/v2/organizations"] >= len(TENANTS)

    async with identity_store(settings) as identity:
        for tenant in TENANTS:
            own = [e for e in sync if e["tenant_id"] == tenant]
            company_ids = {
                e["data"]["company_id"] for e in own if e["event_type"] == "company.upserted"
            }
            person_company = {
                e["data"]["person_id"]: e["data"]["company_id"]
                for e in own
                if e["event_type"] == "person.upserted"
            }
            field = queast_fields[tenant]
            orgs = pipedrive.organizations(tenant)
            assert len(orgs) == COMPANIES, "each company once: pre-existing ones linked"
            pd_org = {o["custom_fields"][field]: o["id"] for o in orgs}
            assert set(pd_org) == company_ids
            persons = pipedrive.persons(tenant)
            assert len(persons) == PEOPLE, "each person once: pre-existing ones linked"
            pd_person = {p["custom_fields"][field]: p for p in persons}
            assert set(pd_person) == set(person_company)
            for queast_id, stored in pd_person.items():
                assert stored["org_id"] == pd_org[person_company[queast_id]], queast_id
                assert len(stored["emails"]) == 1, "the existing e-mail kept, not doubled"

            company_links = {
                link.queast_id: link for link in await identity.links(f"conn_{tenant}", "company")
            }
            assert {q: link.partner_object_id for q, link in company_links.items()} == {
                q: str(i) for q, i in pd_org.items()
            }
            matched = {q for q, link in company_links.items() if link.strategy != "created"}
            assert matched == {c for c in company_ids if _index(c) % 5 == 0}
            assert {company_links[q].strategy for q in matched} == {"domain"}
            person_links = await identity.links(f"conn_{tenant}", "person")
            assert {link.queast_id: link.partner_object_id for link in person_links} == {
                q: str(p["id"]) for q, p in pd_person.items()
            }
            assert sum(link.strategy == "email" for link in person_links) == PEOPLE // 10

            own_signals = [e for e in signals if e["tenant_id"] == tenant]
            notes = pipedrive.notes(tenant)
            assert len(notes) == len(own_signals), "each signal once"
            assert Counter(n["org_id"] for n in notes) == Counter(
                pd_org[e["data"]["company_id"]] for e in own_signals
            )
