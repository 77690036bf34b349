"""GET /v1/tenants/{tenant_id}/dead-letters and POST …/dead-letters/redrive, over the real
Kafka and Redis: access, validation, bounds, and what a redrive puts on the retry topic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.kafka import producer
from processors.operations.deadletters_api import get_dead_letter_api_settings
from processors.routing.idempotency import delivery_id_for
from processors.settings import Settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS
from tests.support.kafka_io import read_to_end

from .conftest import OTHER_ADMIN, OTHER_TENANT, PLATFORM, TENANT, TENANT_ADMIN, auth, make_token

LIST = f"/v1/tenants/{TENANT}/dead-letters"
REDRIVE = f"/v1/tenants/{TENANT}/dead-letters/redrive"
SECRET_VALUE = b'{"name": "a payload value that must never be listed"}'


def _dead_letter(tenant: str, n: int, *, status: int = 400) -> list[tuple[str, str | bytes | None]]:
    key = f"qik_{tenant}_{n}"
    headers = {name: f"{name}-{n}" for name in REQUIRED_HEADERS}
    at = datetime(2026, 12, 4, 9, n, tzinfo=UTC).isoformat()
    error_class = "PermanentError" if status < 500 else "TransientError"
    history = [
        {
            "attempt": 1,
            "at": at,
            "error_class": error_class,
            "reason": f"http {status}",
            "status_code": status,
        }
    ]
    headers.update(
        {
            "qi.tenant_id": tenant,
            "qi.connector": "webhook",
            "qi.connection_id": f"conn_{tenant}",
            "qi.entity_version": "1",
            "qi.idempotency_key": key,
            "qi.delivery_id": delivery_id_for(key),
            "qi.event_type": "company.upserted",
            "qi.attempt": "1",
            "qi.errors": json.dumps(history),
            "qi.error.class": error_class,
            "qi.error.reason": f"http {status}",
            "qi.error.status": str(status),
            "qi.original.topic": "exports",
            "qi.original.partition": "0",
            "qi.original.offset": str(n),
            "qi.payload_included": "true",
        }
    )
    return [(name, value.encode()) for name, value in headers.items()]


@pytest.fixture
def dead_letters(settings: Settings, topics: TopicMap) -> TopicMap:
    """Three dead letters of TENANT (two 400s, one 500) and one of OTHER_TENANT."""
    client = producer(settings.kafka)
    letters = [(TENANT, 0, 400), (TENANT, 1, 500), (TENANT, 2, 400), (OTHER_TENANT, 0, 400)]
    for tenant, n, status in letters:
        client.produce(
            topics.dlq("webhook"),
            key=tenant.encode(),
            value=SECRET_VALUE,
            headers=_dead_letter(tenant, n, status=status),
        )
    assert client.flush(30) == 0
    return topics


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("QI_DLQ_API_MAX_REDRIVE", "2")
    get_dead_letter_api_settings.cache_clear()
    yield
    get_dead_letter_api_settings.cache_clear()


def _retry_copies(settings: Settings, topics: TopicMap) -> list[dict[str, str]]:
    records = read_to_end(settings.kafka.bootstrap_servers, [topics.retry("webhook")], PARTITIONS)
    return [r.headers for r in records]


async def test_a_tenant_admin_lists_its_dead_letters_without_payloads(
    client: httpx.AsyncClient, dead_letters: TopicMap
) -> None:
    response = await client.get(LIST, params={"connector": "webhook"}, headers=TENANT_ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["idempotency_key"] for row in body["items"]] == [
        f"qik_{TENANT}_{n}" for n in range(3)
    ]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert (first["error_class"], first["status_code"], first["attempts"]) == (
        "PermanentError",
        400,
        1,
    )
    assert first["first_attempt_at"] == "2026-12-04T09:00:00Z"
    assert "payload value" not in response.text

    page = await client.get(LIST, params={"connector": "webhook", "limit": 2}, headers=TENANT_ADMIN)
    assert len(page.json()["items"]) == 2
    cursor = page.json()["next_cursor"]
    rest = await client.get(
        LIST, params={"connector": "webhook", "cursor": cursor}, headers=TENANT_ADMIN
    )
    assert [row["idempotency_key"] for row in rest.json()["items"]] == [f"qik_{TENANT}_2"]

    by_error = await client.get(
        LIST, params={"connector": "webhook", "error": "500"}, headers=PLATFORM
    )
    assert [row["idempotency_key"] for row in by_error.json()["items"]] == [f"qik_{TENANT}_1"]
    empty = await client.get(
        f"/v1/tenants/{TENANT}/dead-letters", params={"connector": "hubspot"}, headers=PLATFORM
    )
    assert empty.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (auth("not-a-token"), 401), (OTHER_ADMIN, 403), (auth(make_token(roles=[])), 403)],
)
async def test_callers_without_access_are_refused_and_nothing_is_sent(
    client: httpx.AsyncClient,
    dead_letters: TopicMap,
    settings: Settings,
    headers: dict[str, str],
    status: int,
) -> None:
    listed = await client.get(LIST, params={"connector": "webhook"}, headers=headers)
    assert listed.status_code == status
    redriven = await client.post(REDRIVE, json={"connector": "webhook"}, headers=headers)
    assert redriven.status_code == status
    assert "qik_" not in listed.text + redriven.text
    assert _retry_copies(settings, dead_letters) == []


@pytest.mark.parametrize(
    "params",
    [
        {"connector": "nope"},
        {},
        {"connector": "webhook", "since": "2026-12-04T09:00:00"},
        {"connector": "webhook", "since": "yesterday"},
        {"connector": "webhook", "error": "Permanent Error!"},
        {"connector": "webhook", "limit": "0"},
        {"connector": "webhook", "limit": "501"},
    ],
)
async def test_bad_queries_are_422(
    client: httpx.AsyncClient, dead_letters: TopicMap, params: dict[str, str]
) -> None:
    response = await client.get(LIST, params=params, headers=TENANT_ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"


async def test_a_forged_cursor_is_400(client: httpx.AsyncClient, dead_letters: TopicMap) -> None:
    for cursor in ("-1", "abc", "1" * 40):
        response = await client.get(
            LIST, params={"connector": "webhook", "cursor": cursor}, headers=TENANT_ADMIN
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "body",
    [
        {"connector": "nope"},
        {},
        {"connector": "webhook", "since": "2026-12-04T09:00:00"},
        {"connector": "webhook", "error": "../etc"},
        {"connector": "webhook", "dry_run": "maybe"},
        {"connector": "webhook", "tenant_id": OTHER_TENANT},
    ],
)
async def test_bad_redrive_bodies_are_422_and_send_nothing(
    client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings, body: dict[str, str]
) -> None:
    response = await client.post(REDRIVE, json=body, headers=TENANT_ADMIN)
    assert response.status_code == 422, response.text
    assert _retry_copies(settings, dead_letters) == []


async def test_a_redrive_queues_one_copy_per_dead_letter_with_its_id(
    client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings
) -> None:
    dry = await client.post(
        REDRIVE, json={"connector": "webhook", "dry_run": True}, headers=TENANT_ADMIN
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["matched"], dry.json()["queued"], dry.json()["dry_run"]) == (3, 0, True)
    assert _retry_copies(settings, dead_letters) == []

    response = await client.post(
        REDRIVE, json={"connector": "webhook", "error": "PermanentError"}, headers=TENANT_ADMIN
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["matched"], body["queued"], body["dry_run"], body["unrecoverable"]) == (
        2,
        2,
        False,
        0,
    )
    copies = _retry_copies(settings, dead_letters)
    assert sorted(c["qi.idempotency_key"] for c in copies) == [
        f"qik_{TENANT}_0",
        f"qik_{TENANT}_2",
    ]
    for copy in copies:
        assert (copy["qi.replay_id"], copy["qi.run.kind"]) == (body["redrive_id"], "redrive")
        assert "qi.error.class" not in copy

    other = await client.post(
        f"/v1/tenants/{OTHER_TENANT}/dead-letters/redrive",
        json={"connector": "webhook"},
        headers=PLATFORM,
    )
    assert other.status_code == 202
    assert other.json()["queued"] == 1, "a platform admin reaches any tenant"


async def test_a_redrive_over_the_bound_is_refused_before_anything_is_sent(
    small_bound: None, client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings
) -> None:
    response = await client.post(REDRIVE, json={"connector": "webhook"}, headers=PLATFORM)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "too_many_dead_letters"
    assert "dlq redrive" in response.json()["error"]["message"]
    assert _retry_copies(settings, dead_letters) == []
    narrowed = await client.post(
        REDRIVE, json={"connector": "webhook", "error": "400"}, headers=PLATFORM
    )
    assert narrowed.status_code == 202, narrowed.text
    assert narrowed.json()["queued"] == 2


async def _ids(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
    """The listing's id of each dead letter of ``tenant``, by idempotency key."""
    listed = await client.get(
        f"/v1/tenants/{tenant}/dead-letters", params={"connector": "webhook"}, headers=PLATFORM
    )
    assert listed.status_code == 200, listed.text
    return {row["idempotency_key"]: row["id"] for row in listed.json()["items"]}


async def test_selected_dead_letters_are_redriven_and_the_others_are_not(
    client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings
) -> None:
    ids = await _ids(client, TENANT)
    [theirs] = (await _ids(client, OTHER_TENANT)).values()
    partition, offset = ids[f"qik_{TENANT}_0"].split(":")
    chosen = [ids[f"qik_{TENANT}_0"], ids[f"qik_{TENANT}_2"]]
    forged = [theirs, f"{partition}:999999", f"{int(partition) + PARTITIONS}:{offset}"]

    dry = await client.post(
        REDRIVE,
        json={"connector": "webhook", "ids": chosen + forged, "dry_run": True},
        headers=TENANT_ADMIN,
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["matched"], dry.json()["queued"], dry.json()["not_found"]) == (2, 0, 3)
    assert _retry_copies(settings, dead_letters) == []

    response = await client.post(
        REDRIVE, json={"connector": "webhook", "ids": chosen + forged}, headers=TENANT_ADMIN
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["matched"], body["queued"], body["not_found"]) == (2, 2, 3)
    copies = _retry_copies(settings, dead_letters)
    assert sorted(c["qi.idempotency_key"] for c in copies) == [
        f"qik_{TENANT}_0",
        f"qik_{TENANT}_2",
    ], "only the selected ones; never the other tenant's"

    narrowed = await client.post(
        REDRIVE,
        json={"connector": "webhook", "ids": [ids[f"qik_{TENANT}_1"]], "error": "400"},
        headers=TENANT_ADMIN,
    )
    assert (narrowed.json()["matched"], narrowed.json()["not_found"]) == (0, 1)


async def test_another_tenants_dead_letter_is_never_redriven_by_id(
    client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings
) -> None:
    [theirs] = (await _ids(client, OTHER_TENANT)).values()
    response = await client.post(
        REDRIVE, json={"connector": "webhook", "ids": [theirs]}, headers=TENANT_ADMIN
    )
    assert response.status_code == 202, response.text
    assert (response.json()["matched"], response.json()["not_found"]) == (0, 1)
    refused = await client.post(
        f"/v1/tenants/{OTHER_TENANT}/dead-letters/redrive",
        json={"connector": "webhook", "ids": [theirs]},
        headers=TENANT_ADMIN,
    )
    assert refused.status_code == 403
    assert _retry_copies(settings, dead_letters) == []


@pytest.mark.parametrize(
    "ids",
    [
        [],
        ["0-1"],
        ["0:"],
        ["x:1"],
        ["0:1:2"],
        [0],
        "0:1",
        [f"0:{n}" for n in range(501)],
        [f"0:{'9' * 20}"],
    ],
)
async def test_malformed_or_too_many_ids_are_422_and_send_nothing(
    client: httpx.AsyncClient, dead_letters: TopicMap, settings: Settings, ids: object
) -> None:
    response = await client.post(
        REDRIVE, json={"connector": "webhook", "ids": ids}, headers=TENANT_ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert any("ids" in d["loc"] for d in response.json()["error"]["details"])
    assert _retry_copies(settings, dead_letters) == []
