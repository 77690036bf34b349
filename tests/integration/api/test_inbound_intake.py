"""``POST /webhooks/{connector}/{tenant_id}`` through the real API app, over the real Redis and
Kafka (records read back from ``integrations.inbound``).

The connector is the test-only ``hmactest`` (:mod:`tests.support.inbound`), registered with
:func:`connectors.registry.extended`, since the partners' adapters are built elsewhere: it
signs ``method url body`` with the connection's inbound secret, so a signature only verifies
against the public URL the partner called.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from connectors.registry import extended
from processors.api import create_api
from processors.inbound.models import InboundEvent
from processors.kafka import ensure_topics
from processors.settings import IntakeSettings, KafkaSettings, Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS
from tests.support.inbound import NAME, PLAIN_NAME, PLAIN_SPEC, SPEC, events_body, sign
from tests.support.kafka_io import TopicReader
from tests.support.worker import free_port

from .served import serve

BASE = "https://hooks.example.com"
SECRET_A = "inbound-secret-tenant-a-5f1c"
SECRET_B = "inbound-secret-tenant-b-92de"
TENANT_A = "t_in_a"
TENANT_B = "t_in_b"
TENANT_OFF = "t_in_off"
TENANT_LISTED = "t_in_listed"
ALLOWED_NET = "203.0.113.0/24"


@pytest.fixture(autouse=True)
def no_inbound_secret_or_payload_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """At teardown: no inbound secret, signature header or payload value in any log record."""
    caplog.set_level(logging.DEBUG)
    yield
    for phase in ("setup", "call"):
        for record in caplog.get_records(phase):
            rendered = record.getMessage() + json.dumps(vars(record), default=str)
            for secret in (SECRET_A, SECRET_B, "example.com", "X-Test-Signature"):
                assert secret.lower() not in rendered.lower()


def _url(tenant: str, connector: str = NAME) -> str:
    return f"/webhooks/{connector}/{tenant}"


def _signed(secret: str, tenant: str, body: bytes, *, base: str = BASE) -> dict[str, str]:
    return {
        "X-Test-Signature": sign(secret, "POST", base + _url(tenant), body),
        "Content-Type": "application/json",
    }


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("qi_inbound_total", {"connector": NAME, "outcome": outcome})
    return value or 0.0


@pytest.fixture
def intake_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={"intake": IntakeSettings(public_base_url=BASE, inbound_max_body_bytes=4096)}
    )


@pytest.fixture
def registered() -> Iterator[None]:
    with extended(SPEC, PLAIN_SPEC):
        yield


@pytest.fixture
def inbound_topic(intake_settings: Settings) -> str:
    topics = TopicMap(intake_settings.topics.prefix)
    ensure_topics(
        intake_settings.kafka,
        intake_settings.topics,
        [spec for spec in topics.all_specs() if spec.name == topics.inbound],
    )
    return topics.inbound


@pytest.fixture
async def stored(
    registered: None, intake_settings: Settings, redis_client: Redis
) -> dict[str, ConnectionRecord]:
    """Tenants A and B (inbound on, their own secrets), one with inbound off, one with an IP
    allowlist; all allowlisted."""
    repository = ConnectionRepository(redis_client, key_prefix=intake_settings.redis.key_prefix)
    box = intake_settings.secrets.secret_box()
    blocks: dict[str, dict[str, Any]] = {
        TENANT_A: {"enabled": True, "secret": SECRET_A},
        TENANT_B: {"enabled": True, "secret": SECRET_B},
        TENANT_OFF: {"enabled": False, "secret": SECRET_A},
        TENANT_LISTED: {"enabled": True, "secret": SECRET_A, "ip_allowlist": [ALLOWED_NET]},
    }
    stored: dict[str, ConnectionRecord] = {}
    for tenant, block in blocks.items():
        record = ConnectionRecord.model_validate(
            {"tenant_id": tenant, "connector": NAME, "connection_id": f"conn_{tenant}"}
        )
        sealed = seal_settings(
            {"inbound": block}, box=box, tenant_id=tenant, connection_id=record.connection_id
        )
        record = record.model_copy(update={"settings": sealed})
        await repository.allow(tenant)
        await repository.put(record)
        stored[tenant] = record
    return stored


@asynccontextmanager
async def _client(settings: Settings, peer: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


def _read(
    settings: Settings, topic: str, *, expect: int | None, settle: float = 2.0
) -> list[InboundEvent]:
    """Everything on ``topic``: until ``expect`` records and ``settle`` seconds more, or
    (``expect`` None) for ``settle`` seconds."""
    reader = TopicReader(settings.kafka.bootstrap_servers, [topic], PARTITIONS)
    try:
        if expect is None:
            reader.poll_for(settle)
            records = reader.records
        else:
            records = reader.wait_until(lambda seen: len(seen) >= expect, timeout=30, settle=settle)
    finally:
        reader.close()
    for record in records:
        event = InboundEvent.model_validate_json(record.value or b"")
        assert record.key == event.tenant_id.encode()
    return [InboundEvent.model_validate_json(r.value or b"") for r in records]


async def _seen_keys(redis: Redis, settings: Settings) -> list[bytes]:
    pattern = f"{settings.redis.key_prefix}tenant:*:inbound:seen:*"
    return [key async for key in redis.scan_iter(match=pattern)]


async def test_a_signed_delivery_is_produced_once_per_highlight_however_often_it_comes(
    stored: dict[str, ConnectionRecord],
    intake_settings: Settings,
    inbound_topic: str,
    redis_client: Redis,
) -> None:
    body = events_body("ev-1", "ev-2", "ev-3")
    async with _client(intake_settings) as client:
        answers = [
            await client.post(
                _url(TENANT_A), content=body, headers=_signed(SECRET_A, TENANT_A, body)
            )
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json() == {"accepted": 3, "duplicates": 0}
    assert answers[1].json() == answers[2].json() == {"accepted": 0, "duplicates": 3}

    events = _read(intake_settings, inbound_topic, expect=3, settle=2.0)
    assert sorted(e.partner_event_id for e in events) == ["ev-1", "ev-2", "ev-3"]
    assert {e.tenant_id for e in events} == {TENANT_A}
    assert {e.connection_id for e in events} == {stored[TENANT_A].connection_id}
    assert {e.company.domain for e in events} == {f"ev-{i}.example.com" for i in (1, 2, 3)}
    assert len({e.inbound_id for e in events}) == 3

    keys = await _seen_keys(redis_client, intake_settings)
    assert len(keys) == 3
    for key in keys:
        assert await redis_client.get(key) == b"1"
        assert await redis_client.ttl(key) > 48 * 3600


async def test_refused_requests_answer_their_status_and_reach_nothing(
    stored: dict[str, ConnectionRecord], intake_settings: Settings, inbound_topic: str
) -> None:
    body = events_body("ev-x")
    bad_sig_before = _count("bad_signature")
    async with _client(intake_settings) as client:
        missing = await client.post(_url(TENANT_A), content=body)
        bad = await client.post(
            _url(TENANT_A), content=body, headers={"X-Test-Signature": "00" * 32}
        )
        # Signed for another URL: the public base URL is part of what is signed.
        elsewhere = await client.post(
            _url(TENANT_A),
            content=body,
            headers=_signed(SECRET_A, TENANT_A, body, base="http://api.test"),
        )
        # Tenant A's secret, tenant B's URL.
        cross = await client.post(
            _url(TENANT_B), content=body, headers=_signed(SECRET_A, TENANT_B, body)
        )
        unknown_tenant = await client.post(
            _url("t_nobody"), content=body, headers=_signed(SECRET_A, "t_nobody", body)
        )
        not_enabled = await client.post(
            _url(TENANT_OFF), content=body, headers=_signed(SECRET_A, TENANT_OFF, body)
        )
        malformed_tenant = await client.post(_url("bad.tenant!"), content=body)
        unknown_connector = await client.post(_url(TENANT_A, "nosuch"), content=body)
        no_adapter = await client.post(_url(TENANT_A, PLAIN_NAME), content=body)
        not_json = b"{not json"
        malformed = await client.post(
            _url(TENANT_A), content=not_json, headers=_signed(SECRET_A, TENANT_A, not_json)
        )
        big = events_body(*(f"ev-{i}" for i in range(200)))
        assert len(big) > 4096
        too_large = await client.post(
            _url(TENANT_A), content=big, headers=_signed(SECRET_A, TENANT_A, big)
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        chunked = await client.post(_url(TENANT_A), content=chunks())

    unauthorized = [missing, bad, elsewhere, cross, unknown_tenant, not_enabled, malformed_tenant]
    assert [r.status_code for r in unauthorized] == [401] * len(unauthorized)
    # No tenant, inbound off and a bad signature look the same.
    assert len({(r.text, r.headers.get("www-authenticate")) for r in unauthorized}) == 1
    assert missing.json()["error"]["code"] == "unauthorized"
    assert (unknown_connector.status_code, no_adapter.status_code) == (404, 404)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_payload"
    assert too_large.status_code == 413
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413
    assert _count("bad_signature") >= bad_sig_before + 3

    assert _read(intake_settings, inbound_topic, expect=None, settle=5.0) == []


async def test_the_ip_allowlist_believes_forwarded_addresses_from_trusted_proxies_only(
    stored: dict[str, ConnectionRecord], intake_settings: Settings, inbound_topic: str
) -> None:
    def request(event_id: str) -> tuple[bytes, dict[str, str]]:
        body = events_body(event_id)
        return body, _signed(SECRET_A, TENANT_LISTED, body)

    outcomes: dict[str, int] = {}
    body, headers = request("direct-out")
    async with _client(intake_settings, peer="198.51.100.7") as client:
        outcomes["outside"] = (
            await client.post(_url(TENANT_LISTED), content=body, headers=headers)
        ).status_code
    body, headers = request("direct-in")
    async with _client(intake_settings, peer="203.0.113.9") as client:
        outcomes["inside"] = (
            await client.post(_url(TENANT_LISTED), content=body, headers=headers)
        ).status_code
    # No trusted proxies: a forged X-Forwarded-For naming an allowed address is ignored.
    body, headers = request("forged")
    async with _client(intake_settings, peer="10.0.0.5") as client:
        outcomes["forged"] = (
            await client.post(
                _url(TENANT_LISTED),
                content=body,
                headers={**headers, "X-Forwarded-For": "203.0.113.9"},
            )
        ).status_code

    proxied = intake_settings.model_copy(
        update={
            "intake": IntakeSettings(
                public_base_url=BASE,
                inbound_max_body_bytes=4096,
                trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
            )
        }
    )
    async with _client(proxied, peer="10.0.0.5") as client:
        body, headers = request("via-proxy")
        outcomes["via_proxy"] = (
            await client.post(
                _url(TENANT_LISTED),
                content=body,
                headers={**headers, "X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.6"},
            )
        ).status_code
        body, headers = request("via-proxy-outside")
        outcomes["via_proxy_outside"] = (
            await client.post(
                _url(TENANT_LISTED),
                content=body,
                headers={**headers, "X-Forwarded-For": "203.0.113.9, 198.51.100.7"},
            )
        ).status_code
        body, headers = request("via-proxy-garbage")
        outcomes["via_proxy_garbage"] = (
            await client.post(
                _url(TENANT_LISTED),
                content=body,
                headers={**headers, "X-Forwarded-For": "not-an-address"},
            )
        ).status_code

    assert outcomes == {
        "outside": 403,
        "inside": 202,
        "forged": 403,
        "via_proxy": 202,
        "via_proxy_outside": 403,
        "via_proxy_garbage": 403,
    }
    events = _read(intake_settings, inbound_topic, expect=2, settle=2.0)
    assert sorted(e.partner_event_id for e in events) == ["direct-in", "via-proxy"]


async def test_a_broker_that_does_not_acknowledge_is_503_and_leaves_no_dedupe_key(
    stored: dict[str, ConnectionRecord],
    intake_settings: Settings,
    inbound_topic: str,
    redis_client: Redis,
) -> None:
    closed = intake_settings.model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
            "intake": IntakeSettings(public_base_url=BASE, inbound_produce_timeout_seconds=1.0),
        }
    )
    body = events_body("ev-retry")
    headers = _signed(SECRET_A, TENANT_A, body)
    async with _client(closed) as client:
        refused = await client.post(_url(TENANT_A), content=body, headers=headers)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert await _seen_keys(redis_client, intake_settings) == []

    # The partner's retry, once Kafka is back, goes through.
    async with _client(intake_settings) as client:
        retried = await client.post(_url(TENANT_A), content=body, headers=headers)
    assert retried.status_code == 202
    assert retried.json() == {"accepted": 1, "duplicates": 0}
    events = _read(intake_settings, inbound_topic, expect=1, settle=1.0)
    assert [e.partner_event_id for e in events] == ["ev-retry"]


_HEADER_NAMES = st.sampled_from(
    ["X-Test-Signature", "X-Forwarded-For", "Content-Type", "X-Other", "Content-Encoding"]
)
_HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
).map(str.strip)
_BODIES = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda ids: events_body(*ids), st.lists(st.text(min_size=1, max_size=20), max_size=4)
    ),
    st.just(b"x" * 5000),
)


def test_arbitrary_headers_and_bodies_get_a_documented_answer_and_only_202_produces(
    stored: dict[str, ConnectionRecord], intake_settings: Settings, inbound_topic: str
) -> None:
    accepted = 0
    statuses: set[int] = set()
    with serve(create_api(intake_settings)) as base_url, requests.Session() as http:

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @example(NAME, TENANT_A, events_body("fixed-a"), SECRET_A, {})
        @example(NAME, TENANT_B, events_body("fixed-b"), SECRET_B, {"X-Forwarded-For": "1.2.3.4"})
        @example(NAME, TENANT_B, events_body("fixed-b"), SECRET_A, {})
        @example(NAME, TENANT_A, b"[]", SECRET_A, {})
        @given(
            connector=st.sampled_from([NAME, PLAIN_NAME, "hubspot", "nosuch"]),
            tenant=st.sampled_from([TENANT_A, TENANT_B, TENANT_OFF, TENANT_LISTED, "t_nobody"]),
            body=_BODIES,
            signed_with=st.sampled_from([None, SECRET_A, SECRET_B]),
            extra=st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=3),
        )
        def probe(
            connector: str,
            tenant: str,
            body: bytes,
            signed_with: str | None,
            extra: dict[str, str],
        ) -> None:
            nonlocal accepted
            headers = dict(extra)
            if signed_with is not None:
                headers["X-Test-Signature"] = sign(
                    signed_with, "POST", BASE + _url(tenant, connector), body
                )
            answer = http.post(
                f"{base_url}{_url(tenant, connector)}", data=body, headers=headers, timeout=30
            )
            statuses.add(answer.status_code)
            assert answer.status_code in {202, 400, 401, 403, 404, 413}, answer.text
            if answer.status_code == 202:
                accepted += json.loads(answer.text)["accepted"]

        probe()
    assert {202, 400, 401, 404, 413} <= statuses
    events = _read(intake_settings, inbound_topic, expect=accepted, settle=3.0)
    assert len(events) == accepted
