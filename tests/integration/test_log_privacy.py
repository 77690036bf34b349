"""No personal data or secret reaches a log line of the real worker or the real API.

A full run: the API process stores a webhook connection whose URL carries ``?token=...``, the
worker process routes person events with e-mail addresses (and one invalid one) and delivers
them to a real receiver that fails the first attempts, the API answers listing and probing
requests whose query strings carry e-mails. Then every line of both processes' logs is read.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from processors.samples import sample_person, to_json_line
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import start_worker
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer, generate_secret
from tests.support.api_process import ApiProcess
from tests.support.kafka_io import produce
from tests.support.worker import WorkerProcess

PEOPLE = 12
JWT_SECRET = "log-privacy-test-jwt-secret-0123456789abcdef"
FAST = {
    "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "QI_DELIVERY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "QI_DELIVERY_RETRY_MAX_DELAY_SECONDS": "1",
    "QI_DELIVERY_RETRY_MAX_ATTEMPTS": "20",
    "QI_AUTH_JWT_SECRET": JWT_SECRET,
}


def _bearer(roles: list[str], tenant_id: str | None) -> dict[str, str]:
    claims: dict[str, Any] = {"sub": "ops-1", "roles": roles, "exp": int(time.time()) + 3600}
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


def _person_event(tenant: str, index: int, email: str) -> dict[str, Any]:
    data = sample_person(index, company_index=index)
    data.update(email=email, emails=[email, "alt." + email])
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "person.upserted",
        "schema_version": "1.0",
        "tenant_id": tenant,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


def _forms(secret: str) -> set[str]:
    """``secret`` as it could show in a log line: as is, URL-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


async def test_a_full_run_logs_neither_emails_nor_url_tokens(
    settings: Settings,
    topics: TopicMap,
    repository: ConnectionRepository,  # deletes the run's Redis keys afterwards
    qi_env: dict[str, str],
    test_id: str,
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    tmp_path: Path,
) -> None:
    tenant = f"t_{test_id}"
    url_token = f"SECRETurlTok{uuid.uuid4().hex}"
    emails = [f"ada.{i}.{test_id}@privacy-example.org" for i in range(PEOPLE)]
    signing_secret = generate_secret()
    receiver.set_secret(tenant, signing_secret)
    receiver.state.set_behaviour(tenant, Behaviour(fail_first_n=3))
    env = {**qi_env, **FAST}

    with ApiProcess(env, tmp_path / "api.log") as api:
        platform = _bearer(["platform_admin"], None)
        admin = _bearer(["tenant_admin"], tenant)
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            allowed = await client.put(f"/admin/v1/allowlist/{tenant}", headers=platform)
            assert allowed.status_code == 204
            saved = await client.put(
                f"/v1/tenants/{tenant}/connections/webhook",
                headers=admin,
                json={
                    "enabled": True,
                    "delivery_mode": "webhook",
                    "webhook": {
                        "url": f"{receiver.endpoint_url(tenant)}?token={url_token}",
                        "secret": signing_secret,
                    },
                },
            )
            assert saved.status_code in {200, 201}, saved.text

            start_worker(worker_factory, env, tmp_path)
            events = [_person_event(tenant, i, email) for i, email in enumerate(emails)]
            invalid = _person_event(tenant, PEOPLE, "broken." + emails[0])
            del invalid["data"]["version"]
            produce(
                settings.kafka.bootstrap_servers,
                topics.domain_events,
                ((tenant.encode(), to_json_line(e)) for e in [*events, invalid]),
            )

            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if len(set(receiver.state.delivered_ids(tenant))) >= PEOPLE:
                    break
                await asyncio.sleep(0.5)
            assert len(set(receiver.state.delivered_ids(tenant))) == PEOPLE

            # The API's own traffic, with e-mails and the URL token in query strings and a
            # token where a bearer token belongs.
            listed = await client.get(f"/v1/tenants/{tenant}/deliveries", headers=admin)
            assert listed.status_code == 200
            for query in (f"event_id={quote(emails[1])}", f"cursor={url_token}"):
                probe = await client.get(f"/v1/tenants/{tenant}/deliveries?{query}", headers=admin)
                assert probe.status_code < 500
            refused = await client.get(
                f"/v1/tenants/{tenant}/connections",
                headers={"Authorization": f"Bearer {url_token}"},
            )
            assert refused.status_code == 401
        for worker in worker_factory:
            worker.stop()

    # What the receiver got shows the e-mails went through the worker.
    delivered_emails = {
        d.data.get("email")
        for d in receiver.state.received(tenant)
        if d.delivered and isinstance(d.data, dict)
    }
    assert delivered_emails == set(emails)

    logs = {
        "worker": worker_factory[0].log_path.read_text(errors="replace"),
        "api": (tmp_path / "api.log").read_text(errors="replace"),
    }
    for name, text in logs.items():
        assert text.strip(), f"the {name} log is empty: the check below could not fail"

    secrets = [url_token, signing_secret, "broken." + emails[0]]
    secrets += [*emails, *("alt." + e for e in emails)]
    for name, text in logs.items():
        for number, line in enumerate(text.splitlines(), start=1):
            for secret in secrets:
                for form in _forms(secret):
                    assert form not in line, f"{name} log line {number} holds {secret!r}"

    # The logs did record the run (so the search above looked at something real).
    assert "delivery.attempt.delivered" in logs["worker"]
    assert "delivery.attempt.failed" in logs["worker"]
    assert "routing.event.invalid" in logs["worker"]
    assert "connection.saved" in logs["api"]
    for name, text in logs.items():
        assert "settings.webhook.private_networks_allowed" in text, name
