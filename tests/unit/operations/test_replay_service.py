"""The replay service's checks of a request, and how it picks a tenant's records."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from confluent_kafka import Message
from redis.asyncio import Redis

from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.operations.replay import (
    ReplayInputError,
    ReplayRequest,
    ReplayService,
    _Pass,
)
from processors.operations.runs import RunRecord
from processors.settings import RedisSettings, ReplaySettings, Settings
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.repository import ConnectionRepository

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
async def service() -> AsyncIterator[ReplayService]:
    url = os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"ut{uuid.uuid4().hex[:10]}:"
    settings = Settings(
        redis=RedisSettings(url=url, key_prefix=prefix),
        replay=ReplaySettings(max_window_seconds=7 * 86400, default_window_seconds=600),
    )
    client = Redis.from_url(url)
    yield ReplayService(settings, client, clock=NOW.timestamp)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _request(**changes: Any) -> ReplayRequest:
    return ReplayRequest(**{"tenant_id": "t_1", "connector": "webhook", **changes})


def test_the_window_defaults_to_the_last_minutes_before_now(service: ReplayService) -> None:
    checked = service.check(_request())
    assert checked.until == NOW
    assert checked.since == NOW - timedelta(seconds=600)
    berlin = timezone(timedelta(hours=1))
    given = service.check(_request(until=datetime(2026, 12, 4, 9, 0, tzinfo=berlin)))
    assert given.since == datetime(2026, 12, 4, 7, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"connector": "carrier-pigeon"}, "connector", "unknown connector"),
        ({"event_types": ("company.upserted", "company.exploded")}, "event_types", "unknown"),
        ({"since": datetime(2026, 12, 4, 9, 0)}, "since", "time zone"),
        ({"until": datetime(2026, 12, 4, 9, 0)}, "until", "time zone"),
        ({"since": NOW, "until": NOW}, "since", "before until"),
        ({"since": NOW, "until": NOW - timedelta(minutes=1)}, "since", "before until"),
        ({"since": NOW - timedelta(days=8), "until": NOW}, "until", "longer than the maximum"),
        ({"tenant_id": "t 1; drop"}, "tenant", "tenant id"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    service: ReplayService, changes: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(ReplayInputError, match=says) as refused:
        service.check(_request(**changes))
    assert refused.value.field == field


async def test_the_tenant_needs_a_connection_delivering_through_the_connector(
    service: ReplayService,
) -> None:
    with pytest.raises(ReplayInputError, match="no connection") as refused:
        await service.validate(_request())
    assert refused.value.field == "connector"
    repository = ConnectionRepository(service.store._redis, key_prefix=service.store._prefix)
    await repository.put(
        ConnectionRecord(
            tenant_id="t_1",
            connector=Connector("hubspot"),
            delivery_mode=DeliveryMode.BOTH,
        )
    )
    assert (await service.validate(_request())).connector == "webhook"  # its webhook copy
    assert (await service.validate(_request(connector="hubspot"))).connector == "hubspot"
    with pytest.raises(ReplayInputError, match="no connection"):
        await service.validate(_request(connector="pipedrive"))


def _message(
    key: bytes, tenant: str, n: int, *, event_type: str = "company.upserted", **headers: str
) -> Message:
    envelope = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
    envelope.update(
        {
            "qi.tenant_id": tenant,
            "qi.connector": "webhook",
            "qi.event_type": event_type,
            "qi.entity_version": "1",
            "qi.idempotency_key": f"qik-{n}",
            **headers,
        }
    )
    return Message(
        topic="exports",
        partition=0,
        offset=n,
        key=key,
        value=b"\xc3\x01 not decoded here",
        headers=[(k, v.encode()) for k, v in envelope.items()],
    )


def test_a_pass_keeps_the_tenants_wanted_artifacts_once_and_counts_the_malformed() -> None:
    run = RunRecord(
        run_id="rp_1", kind="replay", tenant_id="t_1", connector="webhook", created_at=NOW
    )
    state = _Pass(run=run, reinjector=None, wanted=frozenset({"company.upserted"}))
    messages = [
        _message(b"t_1", "t_1", 1),
        _message(b"t_2", "t_2", 2),  # another tenant on the partition
        _message(b"t_1", "t_1", 1),  # read twice (exported twice)
        _message(b"t_1", "t_9", 3),  # forged: the header names another tenant
        _message(b"t_1", "t_1", 4, **{"qi.connector": "hubspot"}),
        _message(b"t_1", "t_1", 5, **{"qi.correlation_id": ""}),
        _message(b"t_1", "t_1", 6, event_type="person.upserted"),
        _message(b"t_1", "t_1", 7),
    ]
    assert not state.step(iter(messages))
    assert state.read == len(messages)
    assert (state.matched, state.duplicates, state.malformed) == (2, 1, 3)
    assert state.queued == 0
    assert [s["idempotency_key"] for s in state.samples] == ["qik-1", "qik-7"]
    assert all("error" in s for s in state.samples), "bytes that do not decode say so"
