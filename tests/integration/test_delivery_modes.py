"""Delivery modes end to end: a HubSpot connection in ``both`` mode, real worker, Kafka, Redis,
the HubSpot sandbox and the webhook receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.routing.idempotency import idempotency_key
from processors.samples import sample_events
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import start_worker
from tests.integration.partners import connect, delivery_reader, partner_env, publish
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.webhook_receiver import ReceiverServer, generate_secret
from tests.support.worker import WorkerProcess

TENANT = "t_modes"
HUBSPOT_CONNECTION = "conn_t_modes_hubspot"
WEBHOOK_CONNECTION = "conn_t_modes_webhook"
HUBSPOT_ENDPOINT = "t_modes-hubspot-copy"
OWN_ENDPOINT = "t_modes-own"


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


async def _connect(
    repository: ConnectionRepository,
    settings: Settings,
    *,
    hubspot_token: str,
    receiver: ReceiverServer,
) -> None:
    """The tenant's HubSpot connection in ``both`` mode and its own webhook connection, each
    with its own webhook endpoint and secret."""
    copy_secret, own_secret = generate_secret(), generate_secret()
    receiver.set_secret(HUBSPOT_ENDPOINT, copy_secret)
    receiver.set_secret(OWN_ENDPOINT, own_secret)
    await connect(
        repository,
        settings,
        TENANT,
        "hubspot",
        {
            "auth": {"type": "private_app", "token": hubspot_token},
            "webhook": {"url": receiver.endpoint_url(HUBSPOT_ENDPOINT), "secret": copy_secret},
        },
        connection_id=HUBSPOT_CONNECTION,
        delivery_mode="both",
    )
    await connect(
        repository,
        settings,
        TENANT,
        "webhook",
        {"webhook": {"url": receiver.endpoint_url(OWN_ENDPOINT), "secret": own_secret}},
        connection_id=WEBHOOK_CONNECTION,
        delivery_mode="webhook",
    )


def _key(event: dict[str, Any], *, connector: str, connection_id: str, destination: str) -> str:
    return idempotency_key(
        tenant_id=TENANT,
        connector=connector,
        connection_id=connection_id,
        event_type=event["event_type"],
        entity_id=event["data"]["company_id"],
        entity_version=event["data"]["version"],
        destination=destination,
    )


async def _wait(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.25)
    return condition()


async def test_a_both_mode_hubspot_connection_reaches_hubspot_and_its_webhook_once_each(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    hubspot: HubSpotSandbox,
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    token = "pat-na1-t-modes-0"
    portal = hubspot.add_portal(private_app_token=token)
    await _connect(repository, settings, hubspot_token=token, receiver=receiver)
    # One version per company: with two, a retried older version that meets the newer one
    # already delivered is (rightly) stale-skipped, and "every key delivered" would not hold.
    first: dict[str, dict[str, Any]] = {}
    for e in sample_events([TENANT], 120, seed=81):
        if e["event_type"] == "company.upserted":
            first.setdefault(e["data"]["company_id"], e)
    events = list(first.values())
    companies = {e["data"]["company_id"] for e in events}
    copy_keys = {
        _key(e, connector="hubspot", connection_id=HUBSPOT_CONNECTION, destination="webhook")
        for e in events
    }
    own_keys = {
        _key(e, connector="webhook", connection_id=WEBHOOK_CONNECTION, destination="default")
        for e in events
    }
    assert len(copy_keys) == len(own_keys) == len(events) >= 30
    assert not copy_keys & own_keys
    publish(settings, topics, events)
    env = partner_env(qi_env, connectors=["hubspot", "webhook"], hubspot=hubspot)
    start_worker(worker_factory, env, tmp_path)

    def in_hubspot() -> set[str]:
        return {c["properties"].get("queast_id") for c in hubspot.objects(portal, "companies")}

    def everything_arrived() -> bool:
        return (
            in_hubspot() >= companies
            and set(receiver.delivered_ids(HUBSPOT_ENDPOINT)) >= copy_keys
            and set(receiver.delivered_ids(OWN_ENDPOINT)) >= own_keys
        )

    assert await _wait(everything_arrived, within=180), (
        f"hubspot {len(in_hubspot() & companies)}/{len(companies)}, "
        f"webhook copy {len(set(receiver.delivered_ids(HUBSPOT_ENDPOINT)))}/{len(copy_keys)}, "
        f"own webhook {len(set(receiver.delivered_ids(OWN_ENDPOINT)))}/{len(own_keys)}"
    )
    await asyncio.sleep(2)  # anything sent twice would show up now

    stored = Counter(c["properties"].get("queast_id") for c in hubspot.objects(portal, "companies"))
    assert set(stored) == companies
    assert max(stored.values()) == 1, "each company once in HubSpot"
    for endpoint, keys, connection_id in (
        (HUBSPOT_ENDPOINT, copy_keys, HUBSPOT_CONNECTION),
        (OWN_ENDPOINT, own_keys, WEBHOOK_CONNECTION),
    ):
        applied = receiver.count_by_id(endpoint, delivered_only=True)
        assert set(applied) == keys
        assert max(applied.values()) == 1, f"a webhook id reached {endpoint} twice"
        for delivery in receiver.received(endpoint):
            # verified with this endpoint's secret: each connection signs with its own
            assert delivery.signature_valid, delivery.signature_error
            assert isinstance(delivery.data, dict)
            assert delivery.data["idempotency_key"] == delivery.webhook_id
            assert delivery.data["connection_id"] == connection_id
            assert delivery.data["tenant_id"] == TENANT

    reader = delivery_reader(settings, topics)
    # deferred records may come on the way (a full lane): wait for the delivered ones
    records = reader.wait_until(
        lambda rs: (
            sum(json.loads(r.value or b"{}")["status"] == "delivered" for r in rs)
            >= 3 * len(events)
        ),
        timeout=60,
        settle=1.0,
    )
    reader.close()
    outcomes = Counter(
        (r["connector"], r["connection_id"], r["status"])
        for r in (json.loads(record.value or b"{}") for record in records)
    )
    assert outcomes[("hubspot", HUBSPOT_CONNECTION, "delivered")] == len(events), outcomes
    assert outcomes[("webhook", HUBSPOT_CONNECTION, "delivered")] == len(events), outcomes
    assert outcomes[("webhook", WEBHOOK_CONNECTION, "delivered")] == len(events), outcomes
    assert not [o for o in outcomes if o[2] == "dead_lettered"], outcomes
