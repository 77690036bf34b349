"""POST/GET /v1/tenants/{tenant_id}/replays: access, bounds, rate, isolation, the run itself.

Over the real Redis and Kafka (the test's own topics, empty): a run the API starts reads the
tenant's export partition and ends ``completed`` with nothing matched.
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

from processors.operations.runs import RunRecord, RunStatus, RunStore
from processors.settings import ReplaySettings, Settings
from processors.topics import TopicMap
from tests.support.leaders import end_offsets

from .conftest import OTHER_ADMIN, OTHER_TENANT, PLATFORM, TENANT, TENANT_ADMIN, WEBHOOK_BODY

R = f"/v1/tenants/{TENANT}/replays"
NOW = datetime.now(UTC)
WINDOW = {"since": (NOW - timedelta(minutes=30)).isoformat(), "until": NOW.isoformat()}


async def _connect(client: httpx.AsyncClient, tenant: str, headers: dict[str, str]) -> None:
    assert (await client.put(f"/admin/v1/allowlist/{tenant}", headers=PLATFORM)).status_code == 204
    created = await client.put(
        f"/v1/tenants/{tenant}/connections/webhook", json=WEBHOOK_BODY, headers=headers
    )
    assert created.status_code == 201, created.text


@pytest.fixture
async def connected(
    client: httpx.AsyncClient, topics: TopicMap, api_settings: Settings
) -> httpx.AsyncClient:
    """Both test tenants have a webhook connection; the test's topics exist and have leaders."""
    await end_offsets(api_settings.kafka, topics.exports("webhook"))
    await _connect(client, TENANT, TENANT_ADMIN)
    await _connect(client, OTHER_TENANT, OTHER_ADMIN)
    return client


async def _run_keys(redis: Redis, settings: Settings) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}run:*")]


async def _finished(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(path, headers=TENANT_ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in {"queued", "running"}:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_a_tenant_admin_starts_a_replay_and_follows_it(
    connected: httpx.AsyncClient,
) -> None:
    started = await connected.post(
        R, json={"connector": "webhook", **WINDOW, "dry_run": True}, headers=TENANT_ADMIN
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["replay_id"].startswith("rp_")
    assert body["status"] == "queued"
    assert body["dry_run"] is True
    done = await _finished(connected, f"{R}/{body['replay_id']}")
    assert done["status"] == "completed", done
    assert (done["matched"], done["queued"], done["delivered"], done["failed"]) == (0, 0, 0, 0)

    live = await connected.post(R, json={"connector": "webhook"}, headers=PLATFORM)
    assert live.status_code == 202, live.text
    run = await _finished(connected, f"{R}/{live.json()['replay_id']}")
    assert run["status"] == "completed"
    assert run["dry_run"] is False
    assert run["until"] is not None
    assert run["since"] is not None


async def test_without_a_token_nothing_is_started(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    response = await connected.post(R, json={"connector": "webhook"})
    assert response.status_code == 401
    assert (await connected.get(f"{R}/rp_1")).status_code == 401
    assert await _run_keys(redis_client, api_settings) == []


async def test_a_tenant_admin_cannot_replay_another_tenant(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    response = await connected.post(R, json={"connector": "webhook"}, headers=OTHER_ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert await _run_keys(redis_client, api_settings) == []


async def test_another_tenants_replay_is_not_found(connected: httpx.AsyncClient) -> None:
    started = await connected.post(
        R, json={"connector": "webhook", "dry_run": True}, headers=TENANT_ADMIN
    )
    replay_id = started.json()["replay_id"]
    await _finished(connected, f"{R}/{replay_id}")
    theirs = await connected.get(
        f"/v1/tenants/{OTHER_TENANT}/replays/{replay_id}", headers=OTHER_ADMIN
    )
    unknown = await connected.get(
        f"/v1/tenants/{OTHER_TENANT}/replays/rp_nope", headers=OTHER_ADMIN
    )
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()
    assert theirs.json()["error"]["code"] == "replay_not_found"
    cancel = await connected.post(
        f"/v1/tenants/{OTHER_TENANT}/replays/{replay_id}/cancel", headers=PLATFORM
    )
    assert cancel.status_code == 404
    malformed = await connected.get(f"{R}/not%20an%20id", headers=TENANT_ADMIN)
    assert malformed.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"connector": "webhook", "since": "2026-12-01T10:00:00"}, "since"),
        ({"connector": "webhook", "until": "2026-12-01T10:00:00"}, "until"),
        (
            {
                "connector": "webhook",
                "since": "2026-01-01T00:00:00Z",
                "until": "2026-03-01T00:00:00Z",
            },
            "until",
        ),
        (
            {
                "connector": "webhook",
                "since": "2026-03-01T00:00:00Z",
                "until": "2026-03-01T00:00:00Z",
            },
            "since",
        ),
        ({"connector": "webhook", "event_types": ["company.exploded"]}, "event_types"),
        ({"connector": "carrier-pigeon"}, "connector"),
        ({"connector": "hubspot"}, "connector"),
        ({"connector": "webhook", "dry_run": "maybe"}, "dry_run"),
        ({"connector": "webhook", "since": "yesterday"}, "since"),
        ({"connector": "webhook", "replay_everything": True}, "replay_everything"),
        ({}, "connector"),
    ],
)
async def test_bad_requests_are_422_and_start_nothing(
    connected: httpx.AsyncClient,
    redis_client: Redis,
    api_settings: Settings,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await connected.post(R, json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(d["loc"][:2] == ["body", field] for d in error["details"]), error
    assert await _run_keys(redis_client, api_settings) == []
    rate = f"{api_settings.redis.key_prefix}tenant:{TENANT}:run:rate:replay"
    assert await redis_client.zcard(rate) == 0, "a refused request does not count"


async def test_a_tenant_past_its_hourly_rate_is_told_when_to_come_back(
    client_for: Callable[[Settings], Any],
    api_settings: Settings,
    topics: TopicMap,
    redis_client: Redis,
) -> None:
    await end_offsets(api_settings.kafka, topics.exports("webhook"))
    limited = api_settings.model_copy(update={"replay": ReplaySettings(runs_per_hour=2)})
    async with client_for(limited) as client:
        await _connect(client, TENANT, TENANT_ADMIN)
        await _connect(client, OTHER_TENANT, OTHER_ADMIN)
        body = {"connector": "webhook", "dry_run": True}
        for _ in range(2):
            started = await client.post(R, json=body, headers=TENANT_ADMIN)
            assert started.status_code == 202
            await _finished(client, f"{R}/{started.json()['replay_id']}")
        refused = await client.post(R, json=body, headers=TENANT_ADMIN)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        runs = await _run_keys(redis_client, limited)
        assert len([k for k in runs if k.count(b":") == 2]) == 2, "the refused run was not made"
        other = await client.post(
            f"/v1/tenants/{OTHER_TENANT}/replays", json=body, headers=OTHER_ADMIN
        )
        assert other.status_code == 202, "the rate is per tenant"
        await _finished_other(client, other.json()["replay_id"])


async def _finished_other(client: httpx.AsyncClient, replay_id: str) -> None:
    path = f"/v1/tenants/{OTHER_TENANT}/replays/{replay_id}"
    deadline = time.monotonic() + 60
    while (await client.get(path, headers=OTHER_ADMIN)).json()["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def test_a_second_replay_of_a_running_connection_is_refused_and_can_cancel_it(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    store = RunStore(redis_client, key_prefix=api_settings.redis.key_prefix)
    running = await store.create(
        RunRecord(
            run_id="rp_running",
            kind="replay",
            tenant_id=TENANT,
            connector="webhook",
            status=RunStatus.RUNNING,
            created_at=datetime.now(UTC),
        )
    )
    refused = await connected.post(R, json={"connector": "webhook"}, headers=TENANT_ADMIN)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "replay_active"
    assert "rp_running" in refused.json()["error"]["message"]
    rate = f"{api_settings.redis.key_prefix}tenant:{TENANT}:run:rate:replay"
    assert await redis_client.zcard(rate) == 0, "a refused run does not count"

    cancelled = await connected.post(f"{R}/{running.run_id}/cancel", headers=TENANT_ADMIN)
    assert cancelled.status_code == 202
    assert await store.cancel_requested(running.run_id)


async def test_a_run_whose_process_died_reads_as_failed(
    connected: httpx.AsyncClient, redis_client: Redis, api_settings: Settings
) -> None:
    store = RunStore(redis_client, key_prefix=api_settings.redis.key_prefix)
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    await store.create(
        RunRecord(
            run_id="rp_orphan",
            kind="replay",
            tenant_id=TENANT,
            connector="webhook",
            status=RunStatus.RUNNING,
            created_at=long_ago,
            heartbeat_at=long_ago,
        )
    )
    read = await connected.get(f"{R}/rp_orphan", headers=TENANT_ADMIN)
    assert read.status_code == 200
    assert read.json()["status"] == "failed"
    assert read.json()["error"].startswith("stale")
    again = await connected.post(
        R, json={"connector": "webhook", "dry_run": False}, headers=TENANT_ADMIN
    )
    assert again.status_code == 202, "the dead run's slot is free again"
    await _finished(connected, f"{R}/{again.json()['replay_id']}")
