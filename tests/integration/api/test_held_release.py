"""Records held for a match review are released by the tenant admin's decision, once.

Real worker, Kafka and Redis, the HubSpot sandbox, and the API app (in process, over the same
Redis and Kafka) called with tenant tokens. A company whose domain two HubSpot objects share is
held for review; a confirm (or a reject) sends it once; a held record whose review outlasts
the age budget is dead-lettered ``review_timeout``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from processors.api import create_api
from processors.identity.held import HeldStore, HeldSubject, Released, ReleaseError
from processors.identity.repository import IdentityRepository, ReviewEntry
from processors.samples import sample_events
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.api.conftest import OTHER_ADMIN, TENANT, TENANT_ADMIN
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
from tests.support.kafka_io import TopicReader
from tests.support.worker import WorkerProcess

DOMAIN = "heldreview-ab.se"
COMPANY = "co_held_1"
BASE = f"/v1/tenants/{TENANT}/connections/hubspot/matches/company/{COMPANY}"


async def _held_company(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    hubspot: HubSpotSandbox,
) -> tuple[int, list[str], str]:
    """A HubSpot connection whose portal holds two objects with the company's domain, and the
    company published: (portal, the two object ids, the company's idempotency key prefix)."""
    token = "pat-na1-held-review-portal-token"
    portal = hubspot.add_portal(private_app_token=token)
    await connect(
        repository, settings, TENANT, "hubspot", {"auth": {"type": "private_app", "token": token}}
    )
    seeded = [
        hubspot.state.seed(portal, "companies", {"name": f"Held {n}", "domain": DOMAIN})
        for n in (1, 2)
    ]
    event = next(
        e for e in sample_events([TENANT], 20, seed=5) if e["event_type"] == "company.upserted"
    )
    event["data"].update(
        company_id=COMPANY,
        name="Held For Review AB",
        domain=DOMAIN,
        domains=[DOMAIN],
        website=f"https://{DOMAIN}/",
        linkedin_url="https://www.linkedin.com/company/held-for-review-ab",
    )
    publish(settings, topics, [event])
    return portal, seeded, event["event_id"]


def _records(reader: TopicReader) -> list[dict[str, Any]]:
    return [
        r
        for r in (json.loads(m.value or b"{}") for m in reader.records)
        if r.get("entity_id") == COMPANY
    ]


def _with(status: str, **fields: Any) -> Callable[[TopicReader], bool]:
    def found(reader: TopicReader) -> bool:
        return any(
            r["status"] == status and all(r.get(k) == v for k, v in fields.items())
            for r in _records(reader)
        )

    return found


def _writes(hubspot: HubSpotSandbox, portal: int) -> list[str]:
    """The write requests the portal answered (searches are reads)."""
    return [f"{e.method} {e.path}" for e in hubspot.state.requests(portal) if "/batch/" in e.path]


async def test_a_held_record_is_delivered_once_after_confirm(
    api_settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    client: httpx.AsyncClient,
    redis_client: Redis,
    tmp_path: Path,
) -> None:
    portal, seeded, _event_id = await _held_company(api_settings, topics, repository, hubspot)
    start_worker(
        worker_factory, partner_env(qi_env, connectors=["hubspot"], hubspot=hubspot), tmp_path
    )
    reader = delivery_reader(api_settings, topics)
    try:
        assert await poll_until(reader, lambda: _with("held_for_review")(reader), within=120)
        assert _writes(hubspot, portal) == [], "nothing is written while held"

        held = HeldStore(redis_client, key_prefix=api_settings.redis.key_prefix)
        subject = HeldSubject(f"conn_{TENANT}", "company", COMPANY)
        [kept] = await held.held(subject)
        assert kept.topic == topics.exports("hubspot")

        other = await client.post(f"{BASE}/confirm", headers=OTHER_ADMIN)
        assert other.status_code == 403
        forged = await client.put(BASE, json={"partner_object_id": seeded[0]}, headers=OTHER_ADMIN)
        assert forged.status_code == 403
        malformed = await client.put(BASE, json={"partner_object_id": ""}, headers=TENANT_ADMIN)
        assert malformed.status_code == 422
        oversized = await client.put(
            BASE, json={"partner_object_id": "x" * 129}, headers=TENANT_ADMIN
        )
        assert oversized.status_code == 422
        assert await held.held(subject) == [kept], "refused decisions release nothing"
        async with identity_store(api_settings) as identity:
            [review] = await identity.reviews(f"conn_{TENANT}")
            assert review.queast_id == COMPANY
            assert await identity.get(f"conn_{TENANT}", "company", COMPANY) is None

        confirmed = await client.post(f"{BASE}/confirm", headers=TENANT_ADMIN)
        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert body["state"] == "confirmed"
        assert body["partner_object_id"] in seeded
        assert body["released"] == 1
        release_id = body["release_id"]
        assert release_id

        delivered = _with("delivered", replay_id=release_id)
        assert await poll_until(reader, lambda: delivered(reader), within=120)
        again = await client.post(f"{BASE}/confirm", headers=TENANT_ADMIN)
        assert again.status_code == 200
        assert (again.json()["released"], again.json()["release_id"]) == (0, None)
        # let anything still in flight land before counting
        await poll_until(reader, lambda: False, within=5)
    finally:
        reader.close()

    outcomes = [(r["status"], r.get("replay_id")) for r in _records(reader)]
    assert outcomes.count(("delivered", release_id)) == 1, outcomes
    assert [s for s, _ in outcomes if s == "delivered"] == ["delivered"], outcomes
    assert len(_writes(hubspot, portal)) == 1, _writes(hubspot, portal)
    companies = {c["id"]: c for c in hubspot.objects(portal, "companies")}
    assert set(companies) == set(seeded), "updated in place, nothing created"
    assert companies[body["partner_object_id"]]["properties"].get("queast_id") == COMPANY
    untouched = next(i for i in seeded if i != body["partner_object_id"])
    assert not companies[untouched]["properties"].get("queast_id")


async def test_a_rejected_review_creates_the_company_anew_once(
    api_settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    portal, seeded, _ = await _held_company(api_settings, topics, repository, hubspot)
    start_worker(
        worker_factory, partner_env(qi_env, connectors=["hubspot"], hubspot=hubspot), tmp_path
    )
    reader = delivery_reader(api_settings, topics)
    try:
        assert await poll_until(reader, lambda: _with("held_for_review")(reader), within=120)
        assert (await client.delete(BASE, headers=OTHER_ADMIN)).status_code == 403
        rejected = await client.delete(BASE, headers=TENANT_ADMIN)
        assert rejected.status_code == 204
        assert rejected.headers["Qi-Released"] == "1"
        release_id = rejected.headers["Qi-Release-Id"]
        delivered = _with("delivered", replay_id=release_id)
        assert await poll_until(reader, lambda: delivered(reader), within=120)
    finally:
        reader.close()
    companies = hubspot.objects(portal, "companies")
    created = [c for c in companies if c["id"] not in seeded]
    assert [c["properties"].get("queast_id") for c in created] == [COMPANY]
    async with identity_store(api_settings) as identity:
        link = await identity.get(f"conn_{TENANT}", "company", COMPANY)
        assert link is not None
        assert link.partner_object_id == created[0]["id"]
        assert link.state == "created"


async def test_a_review_outlasting_the_age_budget_dead_letters_review_timeout(
    api_settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    portal, _seeded, _ = await _held_company(api_settings, topics, repository, hubspot)
    env = partner_env(
        qi_env,
        connectors=["hubspot"],
        hubspot=hubspot,
        QI_DELIVERY_RETRY_TIMEOUT_SECONDS="4",
    )
    start_worker(worker_factory, env, tmp_path)
    reader = delivery_reader(api_settings, topics)
    try:
        assert await poll_until(reader, lambda: _with("dead_lettered")(reader), within=120)
        confirmed = await client.post(f"{BASE}/confirm", headers=TENANT_ADMIN)
        assert confirmed.status_code == 200
        assert confirmed.json()["released"] == 0
    finally:
        reader.close()
    statuses = [r["status"] for r in _records(reader)]
    assert statuses == ["held_for_review", "dead_lettered"], statuses
    [dead] = [r for r in _records(reader) if r["status"] == "dead_lettered"]
    assert dead["last_error"]["reason"].startswith("review_timeout")
    assert _writes(hubspot, portal) == []


class _RefusingReleaser:
    """A releaser whose broker refuses every copy."""

    def __init__(self) -> None:
        self.asked: list[HeldSubject] = []

    async def release(
        self, subject: HeldSubject, *, connector: str, tenant_id: str, decision: str
    ) -> Released:
        self.asked.append(subject)
        raise ReleaseError("broker down")


async def test_a_decision_whose_release_fails_is_kept_and_answers_503(
    api_settings: Settings, redis_client: Redis, repository: ConnectionRepository
) -> None:
    await connect(
        repository,
        api_settings,
        TENANT,
        "hubspot",
        {"auth": {"type": "private_app", "token": "pat-na1-held-review-portal-token"}},
    )
    identity = IdentityRepository(redis_client, key_prefix=api_settings.redis.key_prefix)
    await identity.add_review(
        ReviewEntry(
            tenant_id=TENANT,
            connection_id=f"conn_{TENANT}",
            kind="company",
            queast_id=COMPANY,
            best_candidate_id="501",
            confidence=1.0,
            strategy="domain",
            explanation="two objects share the domain",
        )
    )
    app = create_api(api_settings)
    refusing = _RefusingReleaser()
    app.state.releaser = refusing
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        answer = await http.post(f"{BASE}/confirm", headers=TENANT_ADMIN)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "release_failed"
    assert refusing.asked == [HeldSubject(f"conn_{TENANT}", "company", COMPANY)]
    link = await identity.get(f"conn_{TENANT}", "company", COMPANY)
    assert link is not None
    assert (link.partner_object_id, link.state) == ("501", "confirmed")
