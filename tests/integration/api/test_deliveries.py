"""GET /v1/tenants/{tenant_id}/deliveries: filters, pagination, tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from processors.deliveries.models import AttemptError, DeliveryRecord, DeliveryStatus
from processors.deliveries.records import DeliveryRecordIndex
from processors.settings import Settings

from .conftest import OTHER_ADMIN, OTHER_TENANT, PLATFORM, TENANT, TENANT_ADMIN

T = f"/v1/tenants/{TENANT}/deliveries"
BASE = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


def record(
    n: int,
    *,
    tenant_id: str = TENANT,
    status: DeliveryStatus = DeliveryStatus.DELIVERED,
    event_type: str = "company.upserted",
    event_id: str | None = None,
) -> DeliveryRecord:
    finished = BASE + timedelta(minutes=n)
    return DeliveryRecord(
        delivery_id=f"dlv-{tenant_id}-{n}",
        event_id=event_id or f"evt-{n}",
        correlation_id=f"corr-{n}",
        tenant_id=tenant_id,
        connection_id=f"conn_{tenant_id}",
        connector="webhook",
        destination="hooks.example.com",
        event_type=event_type,
        idempotency_key=f"idem-{tenant_id}-{n}",
        entity_id=f"company-{n}",
        entity_version=1,
        attempt=1,
        status=status,
        status_code=500 if status is DeliveryStatus.RETRY_SCHEDULED else 200,
        last_error=(
            AttemptError(attempt=1, at=finished, error_class="TransientError", reason="http 500")
            if status is DeliveryStatus.RETRY_SCHEDULED
            else None
        ),
        started_at=finished - timedelta(milliseconds=40),
        finished_at=finished,
        duration_ms=40.0,
    )


@pytest.fixture
async def indexed(redis_client: Redis, api_settings: Settings) -> list[DeliveryRecord]:
    index = DeliveryRecordIndex(redis_client, key_prefix=api_settings.redis.key_prefix)
    ours = [
        record(0),
        record(1, status=DeliveryStatus.RETRY_SCHEDULED, event_id="evt-shared"),
        record(2, event_type="signal.emitted"),
        record(3, status=DeliveryStatus.DEAD_LETTERED, event_type="signal.emitted"),
        record(4),
        record(5, status=DeliveryStatus.RETRY_SCHEDULED),
        record(6, event_type="person.upserted"),
    ]
    theirs = [
        record(n, tenant_id=OTHER_TENANT, event_id="evt-shared" if n == 1 else None)
        for n in range(3)
    ]
    await index.add_many([*ours, *theirs])
    return ours


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["delivery_id"] for item in response.json()["items"]]


def ours(*numbers: int) -> list[str]:
    return [f"dlv-{TENANT}-{n}" for n in numbers]


async def test_all_newest_first(client: httpx.AsyncClient, indexed: list[DeliveryRecord]) -> None:
    response = await client.get(T, headers=TENANT_ADMIN)
    assert ids(response) == ours(6, 5, 4, 3, 2, 1, 0)
    assert response.json()["next_cursor"] is None
    first = response.json()["items"][-1]
    assert first == indexed[0].model_dump(mode="json")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "retry_scheduled"}, [5, 1]),
        ({"status": "dead_lettered"}, [3]),
        ({"status": "parked"}, []),
        ({"event_type": "signal.emitted"}, [3, 2]),
        ({"event_type": "signal.emitted", "status": "delivered"}, [2]),
        ({"event_id": "evt-shared"}, [1]),
        ({"event_id": "evt-4", "status": "retry_scheduled"}, []),
        ({"since": (BASE + timedelta(minutes=2)).isoformat()}, [6, 5, 4, 3, 2]),
        ({"until": (BASE + timedelta(minutes=2)).isoformat()}, [2, 1, 0]),
        (
            {
                "since": (BASE + timedelta(minutes=1)).isoformat(),
                "until": (BASE + timedelta(minutes=4)).isoformat(),
                "event_type": "company.upserted",
            },
            [4, 1],
        ),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    indexed: list[DeliveryRecord],
    query: dict[str, str],
    expected: list[int],
) -> None:
    assert ids(await client.get(T, params=query, headers=TENANT_ADMIN)) == ours(*expected)


async def test_pagination(client: httpx.AsyncClient, indexed: list[DeliveryRecord]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        response = await client.get(T, params=params, headers=TENANT_ADMIN)
        seen += ids(response)
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ours(6, 5, 4, 3, 2, 1, 0)
    assert pages == 3


async def test_pagination_with_a_filter(
    client: httpx.AsyncClient, indexed: list[DeliveryRecord]
) -> None:
    first = await client.get(T, params={"limit": 1, "status": "retry_scheduled"}, headers=PLATFORM)
    assert ids(first) == ours(5)
    cursor = first.json()["next_cursor"]
    second = await client.get(
        T, params={"limit": 1, "status": "retry_scheduled", "cursor": cursor}, headers=PLATFORM
    )
    assert ids(second) == ours(1)


async def test_other_tenants_records_are_never_visible(
    client: httpx.AsyncClient, indexed: list[DeliveryRecord]
) -> None:
    for params in ({}, {"event_id": "evt-shared"}, {"status": "delivered"}, {"limit": 500}):
        response = await client.get(T, params=params, headers=TENANT_ADMIN)
        assert all(item["tenant_id"] == TENANT for item in response.json()["items"])
    theirs = await client.get(f"/v1/tenants/{OTHER_TENANT}/deliveries", headers=OTHER_ADMIN)
    assert ids(theirs) == [f"dlv-{OTHER_TENANT}-{n}" for n in (2, 1, 0)]
    # a cursor from one tenant's pages does not open another tenant's records
    page = await client.get(T, params={"limit": 1}, headers=TENANT_ADMIN)
    crossed = await client.get(
        f"/v1/tenants/{OTHER_TENANT}/deliveries",
        params={"cursor": page.json()["next_cursor"]},
        headers=TENANT_ADMIN,
    )
    assert crossed.status_code == 403


async def test_empty_tenant(client: httpx.AsyncClient) -> None:
    response = await client.get(T, headers=TENANT_ADMIN)
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("cursor", ["bogus", "bm90LWpzb24", "WzEsIDJd", "eyJhIjogMX0="])
async def test_bad_cursor(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(T, params={"cursor": cursor}, headers=TENANT_ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "many"},
        {"since": "yesterday"},
        {"since": "2026-11-26T05:00:00"},
        {
            "since": (BASE + timedelta(minutes=5)).isoformat(),
            "until": BASE.isoformat(),
        },
    ],
)
async def test_bad_filters(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get(T, params=params, headers=TENANT_ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"


async def test_limit_bounds(client: httpx.AsyncClient, indexed: list[DeliveryRecord]) -> None:
    assert len(ids(await client.get(T, params={"limit": 1}, headers=TENANT_ADMIN))) == 1
    assert len(ids(await client.get(T, params={"limit": 500}, headers=TENANT_ADMIN))) == 7
