"""Shared parts of the inbound end-to-end tests: the three real connectors' inbound blocks,
configured through the real configuration API, and requests signed the way each partner signs.

Tenants ``t_a`` and ``t_b`` (the API tests' tenants) each get a HubSpot, a Pipedrive and a
webhook connection whose ``inbound`` block is enabled with secrets of their own, so that a
request signed for one tenant can be sent to the other's URL. Outbound, each connection takes
``signal.emitted`` only: the worker's routing of the tests' ``company.upserted`` events then
sends nothing anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.hubspot.webhooks import signed_headers
from processors.api import create_api
from processors.inbound.models import InboundEvent
from processors.settings import AuthSettings, IntakeSettings, Settings, WebhookSettings
from tests.integration.api.conftest import (
    HUBSPOT_BODY,
    JWT_SECRET,
    OTHER_TENANT,
    PIPEDRIVE_BODY,
    PLATFORM,
    TENANT,
    WEBHOOK_BODY,
)
from tests.integration.conftest import PARTITIONS
from tests.support.kafka_io import TopicReader

PUBLIC_BASE = "https://hooks.queast.example"
HUBSPOT_SECRETS = {
    TENANT: "hs-client-secret-tenant-a-0b6e",
    OTHER_TENANT: "hs-client-secret-b-77f1",
}
PIPEDRIVE_PASSWORDS = {TENANT: "pd-basic-password-a-91c3", OTHER_TENANT: "pd-basic-password-b-4e2a"}
PIPEDRIVE_USER = "queast-hook"
WEBHOOK_SECRETS = {
    TENANT: "whsec_" + base64.b64encode(b"inbound-e2e-secret-tenant-a-32by").decode(),
    OTHER_TENANT: "whsec_" + base64.b64encode(b"inbound-e2e-secret-tenant-b-32by").decode(),
}
INTEREST_PROPERTY = "queast_interest"
PIPEDRIVE_FIELD = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
PIPEDRIVE_INTEREST = "37"
SECRETS = (
    *HUBSPOT_SECRETS.values(),
    *PIPEDRIVE_PASSWORDS.values(),
    *WEBHOOK_SECRETS.values(),
    *(s.removeprefix("whsec_") for s in WEBHOOK_SECRETS.values()),
)
"""Every inbound secret of these tests: none may be answered or logged."""


def intake_settings(settings: Settings, **intake: Any) -> Settings:
    """The test settings with a JWT secret, private webhook destinations and the intake's
    public base URL (``intake`` overrides more of :class:`IntakeSettings`)."""
    return settings.model_copy(
        update={
            "auth": AuthSettings(jwt_secret=SecretStr(JWT_SECRET)),
            "webhook": WebhookSettings(allow_private_networks=True),
            "intake": IntakeSettings(public_base_url=PUBLIC_BASE, **intake),
        }
    )


@asynccontextmanager
async def api_client(
    settings: Settings, peer: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app over ``settings``, its requests coming from ``peer``."""
    app = create_api(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


def inbound_blocks(tenant: str, allowlist: list[str] | None = None) -> dict[str, dict[str, Any]]:
    listed = {"ip_allowlist": allowlist} if allowlist is not None else {}
    return {
        "hubspot": {
            "enabled": True,
            "client_secret": HUBSPOT_SECRETS[tenant],
            "interest_property": INTEREST_PROPERTY,
            "interest_values": ["true", "hot"],
            **listed,
        },
        "pipedrive": {
            "enabled": True,
            "username": PIPEDRIVE_USER,
            "password": PIPEDRIVE_PASSWORDS[tenant],
            "interest_field_key": PIPEDRIVE_FIELD,
            "interest_values": [PIPEDRIVE_INTEREST],
            **listed,
        },
        "webhook": {"enabled": True, "secret": WEBHOOK_SECRETS[tenant], **listed},
    }


_OUTBOUND = {"hubspot": HUBSPOT_BODY, "pipedrive": PIPEDRIVE_BODY, "webhook": WEBHOOK_BODY}


async def configure(
    client: httpx.AsyncClient, tenant: str, allowlist: list[str] | None = None
) -> dict[str, str]:
    """Allowlist ``tenant`` and PUT its three connections with inbound blocks (as a platform
    admin, through the configuration API); their connection ids by connector."""
    allowed = await client.put(f"/admin/v1/allowlist/{tenant}", headers=PLATFORM)
    assert allowed.status_code == 204, allowed.text
    ids: dict[str, str] = {}
    for connector, block in inbound_blocks(tenant, allowlist).items():
        body = {
            **_OUTBOUND[connector],
            "event_types": {"signal.emitted": True},
            "inbound": block,
        }
        put = await client.put(
            f"/v1/tenants/{tenant}/connections/{connector}", json=body, headers=PLATFORM
        )
        assert put.status_code in (200, 201), put.text
        ids[connector] = str(put.json()["connection_id"])
    return ids


def path(connector: str, tenant: str) -> str:
    return f"/webhooks/{connector}/{tenant}"


# -- what each partner sends ----------------------------------------------------------------


def hubspot_body(
    object_id: int, *, value: str = "true", event_id: int | None = None, occurred_ms: int = 0
) -> bytes:
    """One ``company.propertyChange`` of the interest property, as HubSpot batches it."""
    return json.dumps(
        [
            {
                "eventId": event_id if event_id is not None else uuid.uuid4().int % 10**9,
                "subscriptionId": 2101,
                "portalId": 62515,
                "appId": 1160452,
                "occurredAt": occurred_ms or int(time.time() * 1000),
                "subscriptionType": "company.propertyChange",
                "attemptNumber": 0,
                "objectId": object_id,
                "propertyName": INTEREST_PROPERTY,
                "propertyValue": value,
                "changeSource": "CRM_UI",
            }
        ]
    ).encode()


def hubspot_v3(
    tenant: str, body: bytes, *, secret: str | None = None, now: float | None = None
) -> dict[str, str]:
    """The v3 headers HubSpot sends to ``tenant``'s URL (the public base URL + path)."""
    return {
        **signed_headers(
            secret or HUBSPOT_SECRETS[tenant],
            "POST",
            PUBLIC_BASE + path("hubspot", tenant),
            body,
            now=time.time() if now is None else now,
        ),
        "Content-Type": "application/json",
    }


def pipedrive_v2_body(
    org_id: int, *, website: str, name: str, value: str = PIPEDRIVE_INTEREST
) -> bytes:
    """A Pipedrive v2 ``change`` of an organization's interest field."""
    return json.dumps(
        {
            "meta": {
                "action": "change",
                "entity": "organization",
                "entity_id": str(org_id),
                "id": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat(),
                "version": "2.0",
                "webhook_id": "4242",
                "company_id": "7001",
                "user_id": "501",
                "is_bulk_edit": False,
                "attempt": 1,
            },
            "data": {
                "id": org_id,
                "name": name,
                "website": website,
                "custom_fields": {PIPEDRIVE_FIELD: {"type": "enum", "id": int(value)}},
            },
            "previous": {"custom_fields": {PIPEDRIVE_FIELD: None}},
        }
    ).encode()


def pipedrive_auth(tenant: str, *, password: str | None = None) -> dict[str, str]:
    credentials = f"{PIPEDRIVE_USER}:{password or PIPEDRIVE_PASSWORDS[tenant]}"
    return {
        "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        "Content-Type": "application/json",
    }


def interest_body(company: dict[str, str], *, note: str | None = None) -> bytes:
    """A Standard Webhooks ``company.interest`` body."""
    data: dict[str, Any] = {"company": company}
    if note is not None:
        data["note"] = note
    return json.dumps(
        {"type": "company.interest", "timestamp": datetime.now(UTC).isoformat(), "data": data}
    ).encode()


def standard_signed(
    tenant: str,
    body: bytes,
    *,
    msg_id: str | None = None,
    secret: str | None = None,
    at: float | None = None,
) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` signed with ``tenant``'s inbound secret."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.fromtimestamp(int(time.time() if at is None else at), tz=UTC)
    # by hand, as the specification says: HMAC-SHA256 over "id.timestamp.body", the key the
    # secret's base64 after "whsec_"
    key = base64.b64decode((secret or WEBHOOK_SECRETS[tenant]).removeprefix("whsec_"))
    content = f"{msg_id}.{int(when.timestamp())}.".encode() + body
    signature = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


# -- reading integrations.inbound back ------------------------------------------------------


def read_inbound(
    settings: Settings, topic: str, *, expect: int | None, settle: float = 2.0
) -> list[InboundEvent]:
    """Every record on ``topic``: until ``expect`` records and ``settle`` seconds more, or
    (``expect`` None) for ``settle`` seconds. Each is an InboundEvent keyed by its tenant."""
    reader = TopicReader(settings.kafka.bootstrap_servers, [topic], PARTITIONS)
    try:
        if expect is None:
            reader.poll_for(settle)
            records = reader.records
        else:
            records = reader.wait_until(lambda seen: len(seen) >= expect, timeout=30, settle=settle)
    finally:
        reader.close()
    events = [InboundEvent.model_validate_json(r.value or b"") for r in records]
    for record, event in zip(records, events, strict=True):
        assert record.key == event.tenant_id.encode()
    return events
