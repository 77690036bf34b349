"""POST/GET /v1/tenants/{tenant_id}/backfills: access, bounds, rate, isolation, the run itself.

Over the real Redis and Kafka (the test's own topics): the tenants' domain events are
published, and a run the API starts reads the tenant's partition, appends its exports and ends
``completed`` with its counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from processors.domain.events import EventType
from processors.operations.backfill import BackfillRequest, BackfillService
from processors.operations.runs import RunRecord, RunStatus, RunStore
from processors.samples import sample_events, to_json_line
from processors.settings import ReplaySettings, Settings
from processors.topics import TopicMap
from tests.support.kafka_io import produce
from tests.support.leaders import end_offsets

from .conftest import OTHER_ADMIN, OTHER_TENANT, PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY

B = f"/v1/tenants/{TENANT}/backfills"


async def _connect(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> None:
    assert (await client.put(f"/admin/v1/allowlist/{tenant}", headers=PLATFORM)).status_code == 204
    created = await client.put(
        f"/v1/tenants/{tenant}/connections/webhook", json=WEBHOOK_BODY, headers=headers
    )
    assert created.status_code == 201, created.text


def _companies(tenants: list[str], count: int) -> list[dict[str, Any]]:
    """Company upserts (the type the test connection exports), one version per company."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for event in sample_events(tenants, count, seed=11):
        if event["event_type"] != EventType.COMPANY_UPSERTED.value:
            continue
        company = (event["tenant_id"], str(event["data"]["company_id"]))
        if company not in seen:
            seen.add(company)
            kept.append(event)
    return kept


def _publish(settings: Settings, topics: TopicMap, events: list[dict[str, Any]]) -> None:
    produce(
        settings.kafka.bootstrap_servers,
        topics.domain_events,
        ((e["tenant_id"].encode(), to_json_line(e)) for e in events),
    )


@pytest.fixture
async def connected(
    client: httpx.AsyncClient, topics: TopicMap, api_settings: Settings
) -> httpx.AsyncClient:
    """Both test tenants have a webhook connection; the test's topics exist and have leaders."""
    await end_offsets(api_settings.kafka, topics.domain_events)
    await end_offsets(api_settings.kafka, topics.exports("webhook"))
    await _connect(client, TENANT, TENANT_ADMIN)
    await _connect(client, OTHER_TENANT, OTHER_ADMIN)
    return client


async def _run_keys(redis: Redis, settings: Settings) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}run:*")]


async def _finished(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] = TENANT_ADMIN
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in {"queued", "running"}:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_a_tenant_admin_starts_a_backfill_and_follows_it(
    connected: httpx.AsyncClient, api_settings: Settings, topics: TopicMap
) -> None:
    events = _companies([TENANT, OTHER_TENANT], 400)
    mine = len([e for e in events if e["tenant_id"] == TENANT])
    assert mine > 0
    _publish(api_settings, topics, events)
    exports_before = sum(await end_offsets(api_settings.kafka, topics.exports("webhook")))

    started = await connected.post(
        B, json={"from_offset": 0, "dry_run": True}, headers=TENANT_ADMIN
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["backfill_id"].startswith("bf_")
    assert (body["status"], body["dry_run"], body["connector"]) == ("queued", True, None)
    dry = await _finished(connected, f"{B}/{body['backfill_id']}")
    assert dry["status"] == "completed", dry
    assert (dry["matched"], dry["exported"], dry["invalid"], dry["unrouted"]) == (mine, mine, 0, 0)
    assert (dry["delivered"], dry["failed"], dry["skipped"]) == (0, 0, 0)
    assert sum(await end_offsets(api_settings.kafka, topics.exports("webhook"))) == exports_before

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    live = await connected.post(B, json={"connector": "webhook", "since": since}, headers=PLATFORM)
    assert live.status_code == 202, live.text
    run = await _finished(connected, f"{B}/{live.json()['backfill_id']}")
    assert run["status"] == "completed", run
    assert (run["connector"], run["dry_run"], run["from_offset"]) == ("webhook", False, None)
    assert (run["matched"], run["exported"]) == (mine, mine)
    assert run["since"] is not None
    assert run["finished_at"] is not None
    exports_after = sum(await end_offsets(api_settings.kafka, topics.exports("webhook")))
    assert exports_after == exports_before + mine, "exactly the tenant's exports were appended"


async def test_without_a_token_nothing_is_started(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    assert (await connected.post(B, json={"from_offset": 0})).status_code == 401
    assert (await connected.get(f"{B}/bf_1")).status_code == 401
    assert (await connected.post(f"{B}/bf_1/cancel")).status_code == 401
    assert await _run_keys(redis_client, api_settings) == []


async def test_a_tenant_admin_cannot_backfill_another_tenant(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    response = await connected.post(B, json={"from_offset": 0}, headers=OTHER_ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await connected.get(f"{B}/bf_1", headers=OTHER_ADMIN)).status_code == 403
    assert await _run_keys(redis_client, api_settings) == []


async def test_another_tenants_backfill_is_not_found(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    started = await connected.post(
        B, json={"from_offset": 0, "dry_run": True}, headers=TENANT_ADMIN
    )
    backfill_id = started.json()["backfill_id"]
    await _finished(connected, f"{B}/{backfill_id}")
    theirs_path = f"/v1/tenants/{OTHER_TENANT}/backfills"
    theirs = await connected.get(f"{theirs_path}/{backfill_id}", headers=OTHER_ADMIN)
    unknown = await connected.get(f"{theirs_path}/bf_nope", headers=OTHER_ADMIN)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()
    assert theirs.json()["error"]["code"] == "backfill_not_found"
    cancel = await connected.post(f"{theirs_path}/{backfill_id}/cancel", headers=PLATFORM)
    assert cancel.status_code == 404
    # A replay of the tenant is not a backfill.
    store = RunStore(redis_client, key_prefix=api_settings.redis.key_prefix)
    await store.create(
        RunRecord(
            run_id="rp_done",
            kind="replay",
            tenant_id=TENANT,
            connector="webhook",
            status=RunStatus.COMPLETED,
            dry_run=True,
            created_at=datetime.now(UTC),
        )
    )
    assert (await connected.get(f"{B}/rp_done", headers=TENANT_ADMIN)).status_code == 404
    malformed = await connected.get(f"{B}/not%20an%20id", headers=TENANT_ADMIN)
    assert malformed.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "2026-12-01T10:00:00"}, "since"),
        ({"from_offset": 0, "until": "2026-12-01T10:00:00"}, "until"),
        ({"since": "2026-12-01T10:00:00Z", "from_offset": 0}, "from_offset"),
        ({}, "since"),
        ({"from_offset": -1}, "from_offset"),
        ({"from_offset": "first"}, "from_offset"),
        ({"from_offset": 0, "connector": "carrier-pigeon"}, "connector"),
        ({"from_offset": 0, "connector": "hubspot"}, "connector"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "since"),
        ({"since": "2020-01-01T00:00:00Z"}, "since"),
        ({"since": "2026-03-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, "until"),
        ({"from_offset": 0, "dry_run": "maybe"}, "dry_run"),
        ({"since": "yesterday"}, "since"),
        ({"from_offset": 0, "backfill_everything": True}, "backfill_everything"),
    ],
)
async def test_bad_requests_are_422_and_start_nothing(
    connected: httpx.AsyncClient,
    redis_client: Redis,
    api_settings: Settings,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await connected.post(B, json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(d["loc"][:2] == ["body", field] for d in error["details"]), error
    assert await _run_keys(redis_client, api_settings) == []
    rate = f"{api_settings.redis.key_prefix}tenant:{TENANT}:run:rate:backfill"
    assert await redis_client.zcard(rate) == 0, "a refused request does not count"


async def test_a_tenant_past_its_hourly_rate_is_told_when_to_come_back(
    client_for: Callable[[Settings], Any],
    api_settings: Settings,
    topics: TopicMap,
    redis_client: Redis,
) -> None:
    await end_offsets(api_settings.kafka, topics.domain_events)
    limited = api_settings.model_copy(update={"replay": ReplaySettings(runs_per_hour=2)})
    async with client_for(limited) as client:
        await _connect(client, TENANT, TENANT_ADMIN)
        await _connect(client, OTHER_TENANT, OTHER_ADMIN)
        body = {"from_offset": 0, "dry_run": True}
        for _ in range(2):
            started = await client.post(B, json=body, headers=TENANT_ADMIN)
            assert started.status_code == 202
            await _finished(client, f"{B}/{started.json()['backfill_id']}")
        refused = await client.post(B, json=body, headers=TENANT_ADMIN)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "backfills" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        runs = await _run_keys(redis_client, limited)
        assert len([k for k in runs if k.count(b":") == 2]) == 2, "the refused run was not made"
        other = await client.post(
            f"/v1/tenants/{OTHER_TENANT}/backfills", json=body, headers=OTHER_ADMIN
        )
        assert other.status_code == 202, "the rate is per tenant"
        await _finished(
            client,
            f"/v1/tenants/{OTHER_TENANT}/backfills/{other.json()['backfill_id']}",
            OTHER_ADMIN,
        )
        replay = await client.post(
            f"/v1/tenants/{TENANT}/replays",
            json={"connector": "webhook", "dry_run": True},
            headers=TENANT_ADMIN,
        )
        assert replay.status_code == 202, "replays are counted apart"
        await _finished(client, f"/v1/tenants/{TENANT}/replays/{replay.json()['replay_id']}")


async def test_a_second_backfill_of_a_running_tenant_is_refused_and_can_cancel_it(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    store = RunStore(redis_client, key_prefix=api_settings.redis.key_prefix)
    running = await store.create(
        RunRecord(
            run_id="bf_running",
            kind="backfill",
            tenant_id=TENANT,
            connector="*",
            from_offset=0,
            status=RunStatus.RUNNING,
            created_at=datetime.now(UTC),
        )
    )
    refused = await connected.post(B, json={"from_offset": 0}, headers=TENANT_ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "backfill_active"
    assert "bf_running" in refused.json()["error"]["message"]
    rate = f"{api_settings.redis.key_prefix}tenant:{TENANT}:run:rate:backfill"
    assert await redis_client.zcard(rate) == 0, "a refused run does not count"
    assert len(await _run_keys(redis_client, api_settings)) == 1, "nothing else was recorded"

    read = await connected.get(f"{B}/bf_running", headers=TENANT_ADMIN)
    assert read.status_code == 200
    assert (read.json()["status"], read.json()["connector"]) == ("running", None)
    cancelled = await connected.post(f"{B}/bf_running/cancel", headers=TENANT_ADMIN)
    assert cancelled.status_code == 202
    assert await store.cancel_requested(running.run_id)


async def test_a_cancelled_backfill_stops_after_the_batch_in_hand(
    connected: httpx.AsyncClient,
    redis_client: Redis,
    api_settings: Settings,
    topics: TopicMap,
) -> None:
    events = _companies([TENANT], 3000)
    assert len(events) > 500, "more than one batch"
    _publish(api_settings, topics, events)
    exports_before = sum(await end_offsets(api_settings.kafka, topics.exports("webhook")))
    service = BackfillService(api_settings, redis_client)
    run = await service.start(BackfillRequest(tenant_id=TENANT, from_offset=0))
    await service.store.request_cancel(run.run_id)
    report = await service.execute(run)
    assert report.status is RunStatus.CANCELLED
    assert 0 < report.matched < len(events)
    recorded = await service.store.get(run.run_id)
    assert recorded is not None
    assert recorded.status is RunStatus.CANCELLED
    assert (recorded.matched, recorded.exported) == (report.matched, report.exported)
    exports_after = sum(await end_offsets(api_settings.kafka, topics.exports("webhook")))
    assert exports_after == exports_before + report.exported, "what was made before stays"
    again = await connected.post(B, json={"from_offset": 0}, headers=TENANT_ADMIN)
    assert again.status_code == 202, "the cancelled run's slot is free again"
    await _finished(connected, f"{B}/{again.json()['backfill_id']}")
