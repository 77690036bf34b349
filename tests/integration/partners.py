"""Shared setup of the partner delivery integration tests (HubSpot, Pipedrive, webhooks).

The sandboxes themselves are fixtures in ``conftest.py``; this module holds what the tests
call: the worker environment for partner delivery, storing a sealed connection, publishing
events, and reading delivery records until a condition holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from processors.identity.repository import IdentityRepository
from processors.samples import to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.pipedrive import PipedriveSandbox
from tests.support.kafka_io import TopicReader, produce

TERMINAL = {"delivered", "dead_lettered", "stale_skipped", "duplicate_skipped", "held_for_review"}
"""Delivery record statuses after which a delivery is never attempted again."""

FAST_RETRIES = {
    "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "1",
    "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "20",
}
"""Retries quick enough for a test; a test needing others passes them as overrides."""


def partner_env(
    qi_env: dict[str, str],
    *,
    connectors: Sequence[str],
    hubspot: HubSpotSandbox | None = None,
    pipedrive: PipedriveSandbox | None = None,
    **overrides: str,
) -> dict[str, str]:
    """A worker's environment delivering to ``connectors``, against the given sandboxes,
    with :data:`FAST_RETRIES`; ``overrides`` win over all of it."""
    env = {
        **qi_env,
        "QI_WORKER_DELIVERY_CONNECTORS": json.dumps(list(connectors), separators=(",", ":")),
        **FAST_RETRIES,
    }
    if hubspot is not None:
        env["QI_HUBSPOT_BASE_URL"] = hubspot.url
    if pipedrive is not None:
        env["QI_PIPEDRIVE_BASE_URL"] = pipedrive.url
    return {**env, **overrides}


async def connect(
    repository: ConnectionRepository,
    settings: Settings,
    tenant: str,
    connector: str,
    block: dict[str, Any],
    *,
    connection_id: str | None = None,
    **record_fields: Any,
) -> ConnectionRecord:
    """Allow ``tenant`` and store its connection as the API would: the settings ``block``
    with its secret fields sealed. The connection id defaults to ``conn_<tenant>``;
    ``record_fields`` are further fields of the record (``delivery_mode``, ...)."""
    connection = ConnectionRecord.model_validate(
        {
            "tenant_id": tenant,
            "connector": connector,
            "connection_id": connection_id or f"conn_{tenant}",
            **record_fields,
        }
    )
    sealed = seal_settings(
        block,
        box=settings.secrets.secret_box(),
        tenant_id=tenant,
        connection_id=connection.connection_id,
    )
    connection = connection.model_copy(update={"settings": sealed})
    await repository.allow(tenant)
    await repository.put(connection)
    return connection


def publish(settings: Settings, topics: TopicMap, events: Iterable[dict[str, Any]]) -> None:
    """Produce ``events`` to the domain events topic, keyed by tenant."""
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )


def delivery_reader(settings: Settings, topics: TopicMap) -> TopicReader:
    """A reader of every delivery record, from the beginning."""
    return TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)


async def poll_until(
    reader: TopicReader, done: Callable[[], bool], *, within: float, step: float = 1.0
) -> bool:
    """Poll ``reader`` ``step`` seconds at a time until ``done()`` or ``within`` seconds have
    passed; whether ``done()`` in the end."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not done():
        await asyncio.to_thread(reader.poll_for, step)
    return done()


@asynccontextmanager
async def identity_store(settings: Settings) -> AsyncIterator[IdentityRepository]:
    """The identity store the worker wrote, on a Redis client closed afterwards."""
    client = Redis.from_url(settings.redis.url)
    try:
        yield IdentityRepository(client, key_prefix=settings.redis.key_prefix)
    finally:
        await client.aclose()
