"""The state the browser tests start from, written through the services the API uses.

Tenant ``t_a`` (allowlisted) has a webhook connection and a HubSpot connection, each saved by
:meth:`ConnectionService.save_connection` with known secrets (:data:`SECRETS`, which no page may
render). Its HubSpot connection has one auto-linked company, two companies waiting for review,
each with one record held for it, and a few delivery records. Tenant ``t_b`` has a webhook
connection of its own, which ``t_a``'s admin must not reach.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from redis.asyncio import Redis

from processors.auth import Principal, Role
from processors.deliveries.models import AttemptError, DeliveryRecord, DeliveryStatus
from processors.deliveries.records import DeliveryRecordIndex
from processors.identity.held import HeldRecord, HeldStore, HeldSubject
from processors.identity.repository import IdentityRepository, LinkState, MatchRef, ReviewEntry
from processors.settings import Settings
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import connection_body
from processors.tenants.service import ConnectionService

JWT_SECRET: Final = "browser-tests-hs256-secret-0123456789abcdef-0123456789abcdef-01"
TENANT: Final = "t_a"
OTHER_TENANT: Final = "t_b"

WHSEC: Final = "whsec_" + base64.b64encode(b"browser-webhook-secret-one-32byt").decode()
OTHER_WHSEC: Final = "whsec_" + base64.b64encode(b"browser-webhook-secret-two-32byt").decode()
HUBSPOT_TOKEN: Final = "pat-na1-browser-hubspot-token-9c1f7e"
SECRETS: Final = (
    WHSEC,
    WHSEC.removeprefix("whsec_"),
    OTHER_WHSEC,
    OTHER_WHSEC.removeprefix("whsec_"),
    HUBSPOT_TOKEN,
    "qi-enc:",
)
"""Every secret the seed stores (and the sealed-token mark): no page may contain one."""

AUTO_LINKED: Final = "co_auto_1"
TO_CONFIRM: Final = "co_review_confirm"
TO_UNLINK: Final = "co_review_unlink"
CANDIDATES: Final = ("hs_company_101", "hs_company_102")
CORRELATION_ID: Final = "corr-browser-0001"


def token(
    *,
    tenant_id: str | None = TENANT,
    roles: tuple[str, ...] = ("tenant_admin",),
    exp_in: int = 3600,
) -> str:
    """A bearer token signed with the served app's key, expiring in ``exp_in`` seconds."""
    claims: dict[str, Any] = {
        "sub": f"browser-{tenant_id or 'ops'}",
        "roles": list(roles),
        "exp": int(time.time()) + exp_in,
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


_PLATFORM: Final = Principal(sub="browser-seed", roles=frozenset({Role.PLATFORM_ADMIN}))


async def _connections(service: ConnectionService) -> str:
    """Save the connections; the HubSpot connection's id."""
    webhook: dict[str, Any] = {
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": WHSEC},
        "rate_limit_per_second": 7,
        "max_concurrency": 3,
        "event_types": {"job_ad.published": False},
    }
    hubspot: dict[str, Any] = {
        "delivery_mode": "api",
        "auth": {"type": "private_app", "token": HUBSPOT_TOKEN},
    }
    other = {"webhook": {"url": "http://127.0.0.1:9/other", "secret": OTHER_WHSEC}}
    for tenant, connector, body in (
        (TENANT, Connector("webhook"), webhook),
        (TENANT, Connector("hubspot"), hubspot),
        (OTHER_TENANT, Connector("webhook"), other),
    ):
        parsed = connection_body(connector).model_validate(body)
        await service.save_connection(tenant, connector, parsed, actor=_PLATFORM)
    record = await service.get_connection(TENANT, Connector("hubspot"))
    return record.connection_id


def _held(connection_id: str, queast_id: str, offset: int) -> HeldRecord:
    headers = {
        "qi.delivery_id": f"dl_{queast_id}",
        "qi.tenant_id": TENANT,
        "qi.connector": "hubspot",
        "qi.connection_id": connection_id,
        "qi.event_type": "company.upserted",
        "qi.event_id": f"ev_{queast_id}",
        "qi.idempotency_key": f"ik_{queast_id}",
        "qi.correlation_id": f"corr_{queast_id}",
        "qi.entity_id": queast_id,
        "qi.entity_version": "1",
        "qi.contract": "company",
        "qi.schema_version": "1",
    }
    return HeldRecord.of(
        subject=HeldSubject(connection_id, "company", queast_id),
        value=b"{}",
        headers=headers,
        topic="seeded",
        partition=0,
        offset=offset,
        held_at_ms=int(time.time() * 1000),
    )


async def _identity(redis: Redis, prefix: str, connection_id: str) -> None:
    identity = IdentityRepository(redis, key_prefix=prefix)
    await identity.put(
        MatchRef(TENANT, connection_id, "company", AUTO_LINKED).link(
            "hs_company_900",
            state=LinkState.AUTO_LINKED,
            strategy="domain",
            confidence=0.97,
            explanation="one company with the domain auto-ab.se",
        )
    )
    held = HeldStore(redis, key_prefix=prefix)
    for offset, queast_id in enumerate((TO_CONFIRM, TO_UNLINK)):
        await identity.add_review(
            ReviewEntry(
                tenant_id=TENANT,
                connection_id=connection_id,
                kind="company",
                queast_id=queast_id,
                best_candidate_id=CANDIDATES[0],
                confidence=0.71,
                strategy="company_name",
                explanation="two companies share the name Review AB",
                candidates=[
                    {"partner_object_id": c, "name": "Review AB", "domains": [f"{c}.se"]}
                    for c in CANDIDATES
                ],
            )
        )
        await held.hold(_held(connection_id, queast_id, offset))


async def _deliveries(redis: Redis, settings: Settings, connection_id: str) -> None:
    now = datetime.now(UTC)
    records = [
        DeliveryRecord(
            delivery_id=f"dl_seed_{n}",
            event_id=f"ev_seed_{n}",
            correlation_id=CORRELATION_ID if n == 0 else f"corr-seed-{n}",
            tenant_id=TENANT,
            connection_id=connection_id,
            connector="hubspot",
            destination="hubspot",
            event_type="company.upserted",
            idempotency_key=f"ik_seed_{n}",
            entity_id=AUTO_LINKED,
            entity_version=n + 1,
            attempt=n,
            status=DeliveryStatus.RETRY_SCHEDULED if n == 0 else DeliveryStatus.DELIVERED,
            status_code=503 if n == 0 else 200,
            last_error=(
                AttemptError(
                    attempt=0,
                    at=now,
                    error_class="PartnerUnavailable",
                    reason="HubSpot answered 503",
                    status_code=503,
                )
                if n == 0
                else None
            ),
            started_at=now - timedelta(minutes=n, seconds=1),
            finished_at=now - timedelta(minutes=n),
            duration_ms=120.0 + n,
        )
        for n in range(3)
    ]
    index = DeliveryRecordIndex(
        redis,
        key_prefix=settings.redis.key_prefix,
        retention_seconds=settings.delivery.records_retention_seconds,
    )
    await index.add_many(records)


async def seed(settings: Settings) -> None:
    """Write the seeded state (over an empty key prefix)."""
    redis = Redis.from_url(settings.redis.url)
    try:
        prefix = settings.redis.key_prefix
        repository = ConnectionRepository(redis, key_prefix=prefix)
        await repository.initialise()
        await repository.allow(TENANT)
        await repository.allow(OTHER_TENANT)
        service = ConnectionService(
            repository,
            box=settings.secrets.secret_box(),
            allow_private_networks=settings.webhook.allow_private_networks,
        )
        connection_id = await _connections(service)
        await _identity(redis, prefix, connection_id)
        await _deliveries(redis, settings, connection_id)
    finally:
        await redis.aclose()
