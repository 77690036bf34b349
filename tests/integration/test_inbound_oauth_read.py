"""OAuth HubSpot connections: the inbound reader renews through the delivery sinks' grant store.

Against the real Kafka, Redis and worker and the HubSpot sandbox (real HTTP, real OAuth
refresh-token grant). Two tenants, each with an OAuth connection to its own portal:

- ``t_inoauth_a`` has no renewed grant yet: the worker's reader refreshes once, reads the
  company, and the highlight becomes a bookmark matched by the company's domain; the grant the
  delivery sink starts from afterwards (the sink factory, over the same store) is the one the
  reader renewed;
- ``t_inoauth_b``'s sink already renewed and saved a grant: the reader starts from it and
  reads without refreshing at all.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base.inbound import InboundCompany
from connectors.base.oauth import OAuthGrant
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotOAuth
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.identity.repository import IdentityRepository
from processors.inbound.directory import CompanyDirectory, directory_update
from processors.inbound.models import Bookmark, InboundEvent
from processors.oauthgrants import OAuthTokenStore, credentials_fingerprint
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.partners import connect, partner_env
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.support.kafka_io import ConsumedRecord, TopicReader, produce
from tests.support.worker import WorkerProcess

APP, APP_SECRET = "qi-inbound-app", "qi-inbound-app-secret"
FRESH, RENEWED = "t_inoauth_a", "t_inoauth_b"


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _auth(refresh_token: str) -> dict[str, Any]:
    return {
        "type": "oauth",
        "client_id": APP,
        "client_secret": APP_SECRET,
        "refresh_token": refresh_token,
    }


def _company_upserted(tenant: str, company_id: str, **data: str) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "company.upserted",
            "schema_version": "1.0",
            "tenant_id": tenant,
            "occurred_at": "2026-12-04T09:00:00Z",
            "data": {"company_id": company_id, "version": 1, **data},
        }
    ).encode()


def _highlight(connection: ConnectionRecord, partner_object_id: str) -> InboundEvent:
    return InboundEvent(
        inbound_id=f"in_{uuid.uuid4().hex}",
        tenant_id=connection.tenant_id,
        connector="hubspot",
        connection_id=connection.connection_id,
        partner_event_id=f"evt-{uuid.uuid4().hex[:12]}",
        company=InboundCompany(partner_object_id=partner_object_id),
        received_at=datetime.now(UTC),
        correlation_id=str(uuid.uuid4()),
    )


async def test_oauth_highlights_are_read_with_the_grant_the_sinks_share(
    hubspot: HubSpotSandbox,
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    redis: Redis,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    hubspot.add_oauth_app(APP, APP_SECRET, expires_in=1800)
    box = settings.secrets.secret_box()
    store = OAuthTokenStore(redis, box=box, key_prefix=settings.redis.key_prefix)
    directory = CompanyDirectory(redis, key_prefix=settings.redis.key_prefix)
    highlights: dict[str, InboundEvent] = {}
    connections: dict[str, ConnectionRecord] = {}
    portals: dict[str, int] = {}
    for tenant, domain in ((FRESH, "acme.se"), (RENEWED, "birch.se")):
        portal = hubspot.add_portal()
        portals[tenant] = portal
        hubspot.add_refresh_token(portal, APP, f"rt-{tenant}")
        object_id = hubspot.state.seed(
            portal, "companies", {"name": f"{tenant} (HubSpot spelling)", "domain": domain}
        )
        connection = await connect(
            repository, settings, tenant, "hubspot", {"auth": _auth(f"rt-{tenant}")}
        )
        for company_id, fields in (
            (f"co_{tenant}", {"name": "Known Co AB", "domain": f"www.{domain}"}),
            (f"co_{tenant}_other", {"name": "Other Co", "domain": "other.se"}),
        ):
            update = directory_update(_company_upserted(tenant, company_id, **fields))
            assert update is not None
            await directory.apply(update)
        connections[tenant] = connection
        highlights[tenant] = _highlight(connection, object_id)

    # The RENEWED tenant's sink already renewed its grant: an access token the sandbox issued.
    async with httpx.AsyncClient() as client:
        issued = await client.post(
            f"{hubspot.url}/oauth/v1/token",
            data={
                "grant_type": "refresh_token",
                "client_id": APP,
                "client_secret": APP_SECRET,
                "refresh_token": f"rt-{RENEWED}",
            },
        )
    assert issued.status_code == 200
    sink_token = issued.json()["access_token"]
    renewed_credentials = credentials_fingerprint(_auth(f"rt-{RENEWED}"))
    assert renewed_credentials is not None
    await store.save(
        OAuthGrant(
            access_token=SecretStr(sink_token),
            refresh_token=SecretStr(f"rt-{RENEWED}"),
            expires_at=time.time() + 1700,
        ),
        tenant_id=RENEWED,
        connection_id=highlights[RENEWED].connection_id,
        credentials=renewed_credentials,
    )
    refreshes_before = {t: hubspot.stats(p).token_requests for t, p in portals.items()}

    produce(
        settings.kafka.bootstrap_servers,
        topics.inbound,
        [(e.tenant_id.encode(), e.model_dump_json().encode()) for e in highlights.values()],
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

    assert {r.topic for r in records} == {topics.bookmarks}, [r.value for r in records]
    bookmarks = {
        b.tenant_id: b for b in (Bookmark.model_validate_json(r.value or b"") for r in records)
    }
    for tenant, event in highlights.items():
        bookmark = bookmarks[tenant]
        assert (bookmark.company_id, bookmark.match.strategy) == (f"co_{tenant}", "domain")
        assert bookmark.source.partner_object_id == event.company.partner_object_id
        paths = [(e.method, e.path, e.status) for e in hubspot.requests(portals[tenant])]
        path = f"/crm/v3/objects/companies/{event.company.partner_object_id}"
        assert ("GET", path, 200) in paths
    # FRESH: the reader refreshed exactly once; RENEWED: it used the sink's grant as it was.
    assert hubspot.stats(portals[FRESH]).token_requests == refreshes_before[FRESH] + 1
    assert hubspot.stats(portals[RENEWED]).token_requests == refreshes_before[RENEWED]
    kept = await store.load(
        tenant_id=RENEWED,
        connection_id=highlights[RENEWED].connection_id,
        credentials=renewed_credentials,
    )
    assert kept is not None
    assert kept.access_token.get_secret_value() == sink_token

    # The FRESH connection's delivery sink starts from the grant the reader renewed.
    fresh_credentials = credentials_fingerprint(_auth(f"rt-{FRESH}"))
    assert fresh_credentials is not None
    renewed = await store.load(
        tenant_id=FRESH,
        connection_id=highlights[FRESH].connection_id,
        credentials=fresh_credentials,
    )
    assert renewed is not None
    assert renewed.refresh_token.get_secret_value() == f"rt-{FRESH}"
    assert renewed.expires_at > time.time() + 1000
    factory = ConnectorSinkFactory(
        "hubspot",
        box=box,
        allow_private_networks=False,
        identity=IdentityRepository(redis, key_prefix=settings.redis.key_prefix),
        base_url=hubspot.url,
        tokens=store,
    )
    sink = await factory(connections[FRESH])
    try:
        config = sink.context.config
        assert isinstance(config, HubSpotConnectionConfig)
        assert isinstance(config.auth, HubSpotOAuth)
        assert config.auth.access_token is not None
        sink_access = config.auth.access_token.get_secret_value()
        assert sink_access == renewed.access_token.get_secret_value()
    finally:
        await sink.close()
    async with httpx.AsyncClient() as client:  # and the partner accepts it
        answer = await client.get(
            f"{hubspot.url}/crm/v3/objects/companies/{highlights[FRESH].company.partner_object_id}",
            headers={"authorization": f"Bearer {sink_access}"},
        )
    assert answer.status_code == 200
