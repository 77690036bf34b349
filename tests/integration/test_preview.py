"""The preview service against the real Redis: each connector's requests, skips, no side effects.

Every connection points at a loopback :class:`CountingServer` (the webhook URL, the partners'
base URLs); each test asserts it received nothing, and that Redis holds the same keys and
values after the preview as before.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from processors.deliveries.state import ConnectionHealth, DeliveryStateRepository
from processors.identity.repository import IdentityRepository, LinkState, MatchRef
from processors.operations.preview import (
    PLACEHOLDER_TOKEN,
    ConnectionNotFoundError,
    Outcome,
    Preview,
    PreviewService,
)
from processors.routing import InvalidEventError, InvalidReason
from processors.samples import sample_events
from processors.secrets import REDACTED
from processors.settings import PartnerSettings, Settings, WebhookSettings
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from tests.support.counting_http import CountingServer

TENANT = "t_preview"
WHSEC = "whsec_" + base64.b64encode(b"preview-webhook-secret-32-bytes!").decode()
HUBSPOT_TOKEN = "pat-na1-preview-private-app-token-71d2"
PIPEDRIVE_TOKEN = "pipedrive-preview-api-token-0c9e"
HUBSPOT_CLIENT_SECRET = "hubspot-preview-client-secret-4411"
HUBSPOT_REFRESH = "hubspot-preview-refresh-token-9a0b"
SECRETS = (WHSEC, HUBSPOT_TOKEN, PIPEDRIVE_TOKEN, HUBSPOT_CLIENT_SECRET, HUBSPOT_REFRESH)
DOMAIN_KEY = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"


def event_of(event_type: str, *, tenant: str = TENANT) -> dict[str, Any]:
    """The first sample event of ``event_type`` (company co_0, person pe_0, signal si_0)."""
    return next(e for e in sample_events([tenant], 10) if e["event_type"] == event_type)


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer() as counting:
        yield counting


@pytest.fixture
def preview_settings(settings: Settings, server: CountingServer) -> Settings:
    return settings.model_copy(
        update={
            "webhook": WebhookSettings(allow_private_networks=True),
            "partners": PartnerSettings(base_urls={"hubspot": server.url, "pipedrive": server.url}),
        }
    )


@pytest.fixture
async def redis(preview_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(preview_settings.redis.url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{preview_settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def connections(redis: Redis, preview_settings: Settings) -> ConnectionRepository:
    return ConnectionRepository(redis, key_prefix=preview_settings.redis.key_prefix)


@pytest.fixture
def service(redis: Redis, preview_settings: Settings) -> PreviewService:
    return PreviewService(redis, settings=preview_settings)


async def store(
    connections: ConnectionRepository,
    settings: Settings,
    connector: str,
    connector_settings: dict[str, Any],
    *,
    allow: bool = True,
    **fields: Any,
) -> ConnectionRecord:
    connection_id = f"conn_{connector}_1"
    sealed = seal_settings(
        connector_settings,
        box=settings.secrets.secret_box(),
        tenant_id=TENANT,
        connection_id=connection_id,
    )
    record = ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector(connector),
        connection_id=connection_id,
        settings=sealed,
        **fields,
    )
    await connections.put(record)
    if allow:
        await connections.allow(TENANT)
    return record


async def snapshot(redis: Redis, settings: Settings) -> dict[bytes, Any]:
    """Every key under the test's prefix with its type and value."""
    found: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{settings.redis.key_prefix}*"):
        kind = await redis.type(key)
        if kind == b"hash":
            found[key] = await redis.hgetall(key)
        elif kind == b"set":
            found[key] = await redis.smembers(key)
        else:
            found[key] = await redis.get(key)
    return found


def no_secret_in(preview: Preview) -> None:
    text = preview.model_dump_json()
    for secret in (*SECRETS, PLACEHOLDER_TOKEN):
        assert secret not in text


def webhook_settings(url: str) -> dict[str, Any]:
    return {"webhook": {"url": url, "secret": WHSEC}}


async def test_webhook_preview_shows_the_signed_post_and_sends_nothing(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "webhook",
        webhook_settings(f"{server.url}/hook?token=abc"),
        delivery_mode=DeliveryMode.WEBHOOK,
    )
    before = await snapshot(redis, preview_settings)
    event = event_of("company.upserted")

    preview = await service.preview(TENANT, Connector("webhook"), raw(event))

    assert preview.outcome is Outcome.WOULD_SEND
    (destination,) = preview.destinations
    assert destination.connector == "webhook"
    assert destination.record["company_id"] == "co_0"
    assert destination.record["event_id"] == event["event_id"]
    (request,) = destination.requests
    assert request.method == "POST"
    assert request.purpose == "write"
    assert request.url == f"{server.url}/hook?token={REDACTED}"
    assert request.headers["webhook-id"] == destination.idempotency_key
    assert request.headers["webhook-signature"] == REDACTED
    assert request.headers["webhook-timestamp"].isdigit()
    assert isinstance(request.body, dict)
    assert request.body["data"] == destination.record
    no_secret_in(preview)
    assert server.received == []
    assert await snapshot(redis, preview_settings) == before


async def test_hubspot_preview_searches_then_shows_the_create_branch(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "hubspot",
        {"auth": {"type": "private_app", "token": HUBSPOT_TOKEN}},
    )
    before = await snapshot(redis, preview_settings)

    preview = await service.preview(TENANT, Connector("hubspot"), raw(event_of("company.upserted")))

    assert preview.outcome is Outcome.WOULD_SEND
    (destination,) = preview.destinations
    *searches, upsert = destination.requests
    assert searches  # the exact strategies, then the company's name
    for search in searches:
        assert (search.purpose, search.method) == ("lookup", "POST")
        assert search.url == f"{server.url}/crm/v3/objects/companies/search"
        assert search.note is not None
        assert search.note.startswith("would search")
        assert search.headers["authorization"] == REDACTED
    assert (upsert.purpose, upsert.method) == ("write", "POST")
    assert upsert.url == f"{server.url}/crm/v3/objects/companies/batch/upsert"
    assert upsert.headers["authorization"] == REDACTED
    assert isinstance(upsert.body, dict)
    (written,) = upsert.body["inputs"]
    assert written["id"] == "co_0"
    assert written["properties"]["domain"] == "acme0.example.com"
    assert any(note.startswith("would link company co_0") for note in destination.identity)
    no_secret_in(preview)
    assert server.received == []
    assert await snapshot(redis, preview_settings) == before


async def test_hubspot_preview_of_a_linked_company_updates_it_without_a_search(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    record = await store(
        connections,
        preview_settings,
        "hubspot",
        {"auth": {"type": "private_app", "token": HUBSPOT_TOKEN}},
    )
    identity = IdentityRepository(redis, key_prefix=preview_settings.redis.key_prefix)
    ref = MatchRef(TENANT, record.connection_id, "company", "co_0")
    await identity.put(
        ref.link(
            "4242", state=LinkState.CONFIRMED, strategy="domain", confidence=1.0, explanation=""
        )
    )

    preview = await service.preview(TENANT, Connector("hubspot"), raw(event_of("company.upserted")))

    (destination,) = preview.destinations
    (update,) = destination.requests
    assert update.url == f"{server.url}/crm/v3/objects/companies/batch/update"
    assert isinstance(update.body, dict)
    assert update.body["inputs"][0]["id"] == "4242"
    assert destination.identity == []
    assert server.received == []


async def test_hubspot_oauth_preview_uses_a_placeholder_token_and_saves_no_grant(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    auth = {
        "type": "oauth",
        "client_id": "preview-client",
        "client_secret": HUBSPOT_CLIENT_SECRET,
        "refresh_token": HUBSPOT_REFRESH,
    }
    await store(connections, preview_settings, "hubspot", {"auth": auth})
    before = await snapshot(redis, preview_settings)

    preview = await service.preview(TENANT, Connector("hubspot"), raw(event_of("company.upserted")))

    (destination,) = preview.destinations
    assert destination.outcome is Outcome.WOULD_SEND
    purposes = {r.purpose for r in destination.requests}
    assert purposes == {"lookup", "write"}  # no token refresh
    assert all(r.headers["authorization"] == REDACTED for r in destination.requests)
    no_secret_in(preview)
    assert server.received == []
    assert await snapshot(redis, preview_settings) == before


async def test_hubspot_in_both_mode_previews_the_webhook_copy_too(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "hubspot",
        {
            "auth": {"type": "private_app", "token": HUBSPOT_TOKEN},
            **webhook_settings(f"{server.url}/copy"),
        },
        delivery_mode=DeliveryMode.BOTH,
    )

    preview = await service.preview(TENANT, Connector("hubspot"), raw(event_of("company.upserted")))

    own, copy = preview.destinations
    assert (own.connector, own.webhook_copy) == ("hubspot", False)
    assert (copy.connector, copy.webhook_copy) == ("webhook", True)
    assert own.idempotency_key != copy.idempotency_key
    assert [r.url for r in copy.requests] == [f"{server.url}/copy"]
    no_secret_in(preview)
    assert server.received == []


async def test_pipedrive_preview_lists_candidates_then_creates(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "pipedrive",
        {"auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN}, "domain_field_key": DOMAIN_KEY},
    )
    before = await snapshot(redis, preview_settings)

    preview = await service.preview(
        TENANT, Connector("pipedrive"), raw(event_of("company.upserted"))
    )

    assert preview.outcome is Outcome.WOULD_SEND
    (destination,) = preview.destinations
    lookups = [r for r in destination.requests if r.purpose == "lookup"]
    writes = [r for r in destination.requests if r.purpose == "write"]
    assert lookups
    assert all(r.note for r in lookups)
    (create,) = writes
    assert (create.method, create.url) == ("POST", f"{server.url}/api/v2/organizations")
    assert isinstance(create.body, dict)
    assert create.body["name"] == "Acme 0 Inc"
    assert all(r.headers["x-api-token"] == REDACTED for r in destination.requests)
    assert any(note.startswith("would link company co_0") for note in destination.identity)
    no_secret_in(preview)
    assert server.received == []
    assert await snapshot(redis, preview_settings) == before


async def test_pipedrive_signal_for_an_unlinked_company_would_retry(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "pipedrive",
        {"auth": {"type": "api_token", "token": PIPEDRIVE_TOKEN}, "domain_field_key": DOMAIN_KEY},
    )

    preview = await service.preview(TENANT, Connector("pipedrive"), raw(event_of("signal.emitted")))

    assert preview.outcome is Outcome.WOULD_RETRY
    assert preview.reason == "organization not linked yet"
    assert preview.destinations[0].requests == []
    assert server.received == []


@pytest.mark.parametrize(
    ("fields", "allow", "reason"),
    [
        ({}, False, "tenant_not_allowlisted"),
        ({"enabled": False}, True, "connection_disabled"),
        ({"event_types": {"company.upserted": False}}, True, "event_type_disabled"),
    ],
)
async def test_a_skipped_event_says_why_and_builds_no_request(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    server: CountingServer,
    fields: dict[str, Any],
    allow: bool,
    reason: str,
) -> None:
    await store(
        connections,
        preview_settings,
        "webhook",
        webhook_settings(f"{server.url}/hook"),
        allow=allow,
        delivery_mode=DeliveryMode.WEBHOOK,
        **fields,
    )

    preview = await service.preview(TENANT, Connector("webhook"), raw(event_of("company.upserted")))

    assert (preview.outcome, preview.reason) == (Outcome.SKIPPED, reason)
    assert preview.destinations == []
    assert server.received == []


async def test_an_export_delivered_already_is_a_duplicate(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    await store(
        connections,
        preview_settings,
        "webhook",
        webhook_settings(f"{server.url}/hook"),
        delivery_mode=DeliveryMode.WEBHOOK,
    )
    event = raw(event_of("company.upserted"))
    first = await service.preview(TENANT, Connector("webhook"), event)
    key = first.destinations[0].idempotency_key
    await redis.set(f"{preview_settings.redis.key_prefix}dlv:{key}", "1")

    again = await service.preview(TENANT, Connector("webhook"), event)

    assert again.outcome is Outcome.DUPLICATE_SKIPPED
    assert again.destinations[0].requests == []


async def test_a_malformed_event_raises_the_routers_reason(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    server: CountingServer,
) -> None:
    await store(connections, preview_settings, "webhook", webhook_settings(f"{server.url}/hook"))
    other_tenant = event_of("company.upserted", tenant="t_other")
    broken = {**event_of("company.upserted"), "data": {"company_id": ""}}

    with pytest.raises(InvalidEventError) as forged:
        await service.preview(TENANT, Connector("webhook"), raw(other_tenant))
    with pytest.raises(InvalidEventError) as invalid:
        await service.preview(TENANT, Connector("webhook"), raw(broken))
    with pytest.raises(InvalidEventError) as unparseable:
        await service.preview(TENANT, Connector("webhook"), b"{not json")

    assert forged.value.reason is InvalidReason.KEY_MISMATCH
    assert invalid.value.reason is InvalidReason.VALIDATION_FAILED
    assert unparseable.value.reason is InvalidReason.UNPARSEABLE
    assert server.received == []


async def test_an_unknown_connection_is_not_found(
    service: PreviewService, connections: ConnectionRepository, preview_settings: Settings
) -> None:
    await store(connections, preview_settings, "webhook", webhook_settings("http://127.0.0.1:9/h"))

    with pytest.raises(ConnectionNotFoundError):
        await service.preview(TENANT, Connector("pipedrive"), raw(event_of("company.upserted")))


async def test_an_unreadable_connection_record_is_a_skip(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    await store(connections, preview_settings, "webhook", webhook_settings(f"{server.url}/h"))
    key = f"{preview_settings.redis.key_prefix}tenant:{TENANT}:connections"
    await redis.hset(key, "webhook", "{not a connection")

    preview = await service.preview(TENANT, Connector("webhook"), raw(event_of("company.upserted")))

    assert (preview.outcome, preview.reason) == (Outcome.SKIPPED, "configuration_unreadable")
    assert server.received == []


async def test_a_destination_whose_credentials_were_refused_is_parked(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    record = await store(
        connections,
        preview_settings,
        "hubspot",
        {"auth": {"type": "private_app", "token": HUBSPOT_TOKEN}},
    )
    state = DeliveryStateRepository(
        redis,
        key_prefix=preview_settings.redis.key_prefix,
        dedupe_ttl_seconds=60,
        hop_ttl_seconds=60,
    )
    await state.set_connection_state(
        record.connection_id,
        ConnectionHealth.NEEDS_REAUTH,
        reason="unauthorized",
        since=record.updated_at.timestamp() + 1,
    )

    preview = await service.preview(TENANT, Connector("hubspot"), raw(event_of("company.upserted")))

    assert (preview.outcome, preview.reason) == (Outcome.PARKED, "needs_reauth")
    assert preview.destinations[0].requests == []
    assert server.received == []


async def test_pipedrive_oauth_preview_refreshes_nothing(
    service: PreviewService,
    connections: ConnectionRepository,
    preview_settings: Settings,
    redis: Redis,
    server: CountingServer,
) -> None:
    auth = {
        "type": "oauth",
        "client_id": "preview-client",
        "client_secret": HUBSPOT_CLIENT_SECRET,
        "refresh_token": HUBSPOT_REFRESH,
        "api_domain": "https://acme.pipedrive.com",
    }
    await store(
        connections,
        preview_settings,
        "pipedrive",
        {"auth": auth, "domain_field_key": DOMAIN_KEY},
    )
    before = await snapshot(redis, preview_settings)

    preview = await service.preview(
        TENANT, Connector("pipedrive"), raw(event_of("company.upserted"))
    )

    (destination,) = preview.destinations
    assert destination.outcome is Outcome.WOULD_SEND
    assert destination.requests
    assert all(r.purpose != "token" for r in destination.requests)
    assert all(r.url.startswith(server.url) for r in destination.requests)
    assert all(r.headers["authorization"] == REDACTED for r in destination.requests)
    no_secret_in(preview)
    assert server.received == []
    assert await snapshot(redis, preview_settings) == before
