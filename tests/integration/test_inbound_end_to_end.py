"""Partner webhooks to bookmarks and reviews, the whole path: the real adapters behind the
intake route, Kafka, a worker process (the inbound agent and the company directory), Redis and
the review API.

Connections are configured through the configuration API; the link of a partner company is
put in the identity store as outbound delivery writes it; the tenant's companies arrive as
``company.upserted`` events on ``queast.domain-events`` (the worker builds the directory from
them); bookmarks are read from ``queast.bookmarks`` and reviews from
``integrations.match-review`` and the API.

Pipedrive, as documented in :mod:`connectors.pipedrive.webhooks` and
:mod:`processors.inbound.resolution`: the highlight carries the organization's name and its
website's host as the domain, so an organization that is not linked is matched on those fields;
a known domain is a bookmark with strategy ``domain``, a website and name no company has wait
for review with reason ``no_candidate``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from processors.identity.repository import IdentityRepository, LinkState, MatchRef
from processors.inbound.models import Bookmark, InboundReview
from processors.settings import Settings
from processors.topics import TopicMap
from tests.integration.api.conftest import PLATFORM, TENANT, TENANT_ADMIN
from tests.integration.conftest import PARTITIONS, start_worker
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

from .inbound_e2e import (
    SECRETS,
    api_client,
    configure,
    hubspot_body,
    hubspot_v3,
    intake_settings,
    interest_body,
    path,
    pipedrive_auth,
    pipedrive_v2_body,
    standard_signed,
)

LINKED_HUBSPOT_ID = 5011
COMPANIES: list[dict[str, Any]] = [
    {"company_id": "co_domain", "name": "Domain Works", "domain": "domainworks.io"},
    {"company_id": "co_nordic_1", "name": "Nordic Widgets"},
    {"company_id": "co_nordic_2", "name": "Nordic Widgets"},
    {"company_id": "co_linked", "name": "Linked Industries", "domain": "linked-ind.com"},
    {"company_id": "co_pipe", "name": "Pipe Organisation", "domain": "pipe-org.io"},
]


@pytest.fixture(autouse=True)
def no_inbound_secret_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """At teardown: no inbound secret in any log record of the test process."""
    caplog.set_level(logging.DEBUG)
    yield
    for phase in ("setup", "call"):
        for record in caplog.get_records(phase):
            rendered = record.getMessage() + json.dumps(vars(record), default=str)
            for secret in SECRETS:
                assert secret not in rendered


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _company_event(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "company.upserted",
            "schema_version": "1.0",
            "tenant_id": TENANT,
            "occurred_at": "2026-12-01T09:00:00Z",
            "correlation_id": str(uuid.uuid4()),
            "data": {**data, "version": 1},
        }
    ).encode()


def _values(records: list[ConsumedRecord], topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"{}") for r in records if r.topic == topic]


async def _wait_for(check: Callable[[], Awaitable[bool]], *, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError("condition not met in time")


async def test_partner_webhooks_become_bookmarks_once_and_a_shared_name_waits_for_review(
    settings: Settings,
    topics: TopicMap,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
    redis_client: Redis,
) -> None:
    api = intake_settings(settings)
    prefix = settings.redis.key_prefix
    async with api_client(api) as client:
        connections = await configure(client, TENANT)
    # co_linked was written to HubSpot by this connection as company 5011
    await IdentityRepository(redis_client, key_prefix=prefix).put(
        MatchRef(TENANT, connections["hubspot"], "company", "co_linked").link(
            str(LINKED_HUBSPOT_ID),
            state=LinkState.CREATED,
            strategy="created",
            confidence=1.0,
            explanation="",
        )
    )
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        [(TENANT.encode(), _company_event(company)) for company in COMPANIES],
    )
    start_worker(worker_factory, qi_env, tmp_path)
    directory_key = f"{prefix}tenant:{TENANT}:indir:companies"

    async def directory_built() -> bool:
        return int(await redis_client.hlen(directory_key)) == len(COMPANIES)

    await _wait_for(directory_built)

    # 2. the linked HubSpot company, one signed v3 delivery sent three times
    hubspot = hubspot_body(LINKED_HUBSPOT_ID, value="hot")
    hubspot_headers = hubspot_v3(TENANT, hubspot)
    # 3. a generic interest by domain, one by a name two companies share
    by_domain = interest_body({"domain": "https://www.domainworks.io/about"}, note="booth 12")
    by_domain_headers = standard_signed(TENANT, by_domain)
    shared = interest_body({"name": "Nordic Widgets"})
    shared_headers = standard_signed(TENANT, shared)
    # 5. a Pipedrive v2 organization change of the interest field: not linked, its website
    # names a known company's domain (the name does not match any)
    pipe = pipedrive_v2_body(880, website="http://www.pipe-org.io/", name="PipeOrg Holding")
    # and one whose website and name are no known company's: kept for a human
    unknown_pipe = pipedrive_v2_body(881, website="https://zeta-quux.example", name="Zeta Quux")
    async with api_client(api) as client:
        hubspot_answers = [
            await client.post(path("hubspot", TENANT), content=hubspot, headers=hubspot_headers)
            for _ in range(3)
        ]
        others = [
            await client.post(
                path("webhook", TENANT), content=by_domain, headers=by_domain_headers
            ),
            await client.post(path("webhook", TENANT), content=shared, headers=shared_headers),
            await client.post(
                path("pipedrive", TENANT), content=pipe, headers=pipedrive_auth(TENANT)
            ),
            await client.post(
                path("pipedrive", TENANT), content=unknown_pipe, headers=pipedrive_auth(TENANT)
            ),
        ]
    assert [a.status_code for a in hubspot_answers] == [202, 202, 202]
    assert [a.json() for a in hubspot_answers] == [
        {"accepted": 1, "duplicates": 0},
        {"accepted": 0, "duplicates": 1},
        {"accepted": 0, "duplicates": 1},
    ]
    assert [(a.status_code, a.json()) for a in others] == [
        (202, {"accepted": 1, "duplicates": 0})
    ] * 4

    reader = TopicReader(
        settings.kafka.bootstrap_servers, [topics.bookmarks, topics.match_review], PARTITIONS
    )
    try:
        records = reader.wait_until(
            lambda rs: (
                len(_values(rs, topics.bookmarks)) >= 3
                and len(_values(rs, topics.match_review)) >= 2
            ),
            timeout=120,
            settle=3,
        )
        bookmarks = [Bookmark.model_validate(v) for v in _values(records, topics.bookmarks)]
        assert len(bookmarks) == 3, [(b.company_id, b.match.strategy) for b in bookmarks]
        for record in records:
            assert record.key == TENANT.encode()
        by_connector = {b.source.connector: b for b in bookmarks}
        assert set(by_connector) == {"hubspot", "webhook", "pipedrive"}

        linked = by_connector["hubspot"]
        assert (linked.company_id, linked.match.strategy, linked.match.confidence) == (
            "co_linked",
            "partner_id",
            1.0,
        )
        assert linked.tenant_id == TENANT
        assert linked.source.connection_id == connections["hubspot"]
        assert linked.source.partner_object_id == str(LINKED_HUBSPOT_ID)

        domain = by_connector["webhook"]
        assert (domain.company_id, domain.match.strategy) == ("co_domain", "domain")
        assert domain.source.partner_event_id == by_domain_headers["webhook-id"]

        # the Pipedrive highlight carries the organization's website host: matched by domain
        piped = by_connector["pipedrive"]
        assert (piped.company_id, piped.match.strategy) == ("co_pipe", "domain")
        assert piped.source.partner_object_id == "880"
        assert piped.source.connection_id == connections["pipedrive"]

        review_records = _values(records, topics.match_review)
        assert sorted(r["reason"] for r in review_records) == ["ambiguous", "no_candidate"]

        # the review, through the API: listed with both candidates, resolved once
        async with api_client(api) as client:
            reviews_path = f"/v1/tenants/{TENANT}/inbound/reviews"
            listed = await client.get(reviews_path, headers=TENANT_ADMIN)
            assert listed.status_code == 200, listed.text
            listed_reviews = [InboundReview.model_validate(r) for r in listed.json()["items"]]
            by_reason = {r.reason: r for r in listed_reviews}
            assert len(listed_reviews) == len(by_reason) == 2
            unmatched = by_reason["no_candidate"]
            assert (unmatched.event.connector, unmatched.event.company.partner_object_id) == (
                "pipedrive",
                "881",
            )
            assert unmatched.event.company.domain == "zeta-quux.example"
            review = by_reason["ambiguous"]
            assert review.status == "pending"
            assert review.event.connector == "webhook"
            assert review.event.partner_event_id == shared_headers["webhook-id"]
            assert {c.company_id for c in review.candidates} == {"co_nordic_1", "co_nordic_2"}
            resolve = f"{reviews_path}/{review.review_id}/resolve"
            first = await client.post(
                resolve, json={"company_id": "co_nordic_2"}, headers=TENANT_ADMIN
            )
            again = await client.post(resolve, json={"company_id": "co_nordic_2"}, headers=PLATFORM)
            assert (first.status_code, again.status_code) == (200, 200), first.text
            assert again.json()["bookmark"] == first.json()["bookmark"]

        records = reader.wait_until(
            lambda rs: len(_values(rs, topics.bookmarks)) >= 4, timeout=30, settle=4
        )
        bookmarks = [Bookmark.model_validate(v) for v in _values(records, topics.bookmarks)]
        assert len(bookmarks) == 4
        (manual,) = [b for b in bookmarks if b.match.strategy == "manual"]
        assert manual.company_id == "co_nordic_2"
        assert manual.source.connector == "webhook"
        assert len(_values(records, topics.match_review)) == 2
    finally:
        reader.close()
