"""The intake route with the real HubSpot, Pipedrive and Standard Webhooks adapters, over the
real Redis and Kafka: what each partner signs passes, everything forged, stale, replayed,
unsigned, sent to another tenant's URL or malformed is refused with the documented status, and
only what was accepted is on ``integrations.inbound`` (read back).

Connections are configured through the configuration API (:mod:`tests.integration.inbound_e2e`),
so the inbound block the intake reads is the one the API stored, sealed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from connectors.hubspot.webhooks import legacy_headers, signature_v1, signature_v3
from processors.api import create_api
from processors.kafka import ensure_topics
from processors.settings import Settings
from processors.topics import TopicMap
from tests.integration.api.conftest import HUBSPOT_BODY, OTHER_TENANT, PLATFORM, TENANT
from tests.integration.api.served import serve

from .inbound_e2e import (
    HUBSPOT_SECRETS,
    PUBLIC_BASE,
    SECRETS,
    WEBHOOK_SECRETS,
    api_client,
    configure,
    hubspot_body,
    hubspot_v3,
    intake_settings,
    interest_body,
    path,
    pipedrive_auth,
    pipedrive_v2_body,
    read_inbound,
    standard_signed,
)

# HubSpot's documented vectors (PARTNERS.md, "Test vectors" H2 and H5).
H_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
H_URI = "https://www.example.com/webhook_uri"
H_BODY = b"{'example_field':'example_value'}"
H2_V1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
H5_V3 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
H5_TIMESTAMP = "1693657560000"
STALE = 6 * 60  # seconds: over HubSpot's and Standard Webhooks' 5 minutes


@pytest.fixture(autouse=True)
def no_inbound_secret_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """At teardown: no inbound secret in any log record."""
    caplog.set_level(logging.DEBUG)
    yield
    for phase in ("setup", "call"):
        for record in caplog.get_records(phase):
            rendered = record.getMessage() + json.dumps(vars(record), default=str)
            for secret in SECRETS:
                assert secret not in rendered


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return intake_settings(settings)


@pytest.fixture
def inbound_topic(api_settings: Settings) -> str:
    topics = TopicMap(api_settings.topics.prefix)
    ensure_topics(
        api_settings.kafka,
        api_settings.topics,
        [spec for spec in topics.all_specs() if spec.name == topics.inbound],
    )
    return topics.inbound


@pytest.fixture
async def redis_client(api_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(api_settings.redis.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{api_settings.redis.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def configured(api_settings: Settings, redis_client: Redis) -> dict[str, dict[str, str]]:
    """Both tenants' three connections, inbound enabled (no allowlist)."""
    _ = redis_client  # its teardown removes the connections
    async with api_client(api_settings) as client:
        return {tenant: await configure(client, tenant) for tenant in (TENANT, OTHER_TENANT)}


async def _post(
    client: httpx.AsyncClient, connector: str, tenant: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(path(connector, tenant), content=body, headers=headers)


def _statuses(answers: dict[str, httpx.Response]) -> dict[str, int]:
    return {name: answer.status_code for name, answer in answers.items()}


def _count(connector: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "qi_inbound_total", {"connector": connector, "outcome": outcome}
    )
    return value or 0.0


_HUBSPOT_OUTCOMES = {
    "missing_signature": 1.0,
    # forged v3 and v1, another URI, tenant A's signature at B's URL, A's secret for B
    "bad_signature": 5.0,
    "stale_timestamp": 1.0,
    "future_timestamp": 1.0,
    "unknown_tenant": 1.0,
    "malformed": 2.0,
    "accepted": 2.0,
    "duplicate": 1.0,
}


# -- 1. vectors pass, everything else refused, nothing refused produced ---------------------


def test_the_helpers_compute_hubspots_documented_vectors() -> None:
    """The signing helpers the route tests use are HubSpot's algorithms (H2 and H5)."""
    assert signature_v1(H_SECRET, H_BODY) == H2_V1
    assert signature_v3(H_SECRET, "POST", H_URI, H_BODY, H5_TIMESTAMP) == H5_V3


async def test_hubspots_documented_vectors_through_the_route(
    api_settings: Settings, redis_client: Redis, inbound_topic: str
) -> None:
    """A connection whose client secret is the vectors' own: H2 (v1, which signs neither URI
    nor time) authenticates through the route, and its body, not a HubSpot batch, is 400; H5
    (v3, signed in 2023 for another URL) is refused 401. Neither reaches Kafka."""
    _ = redis_client
    tenant = "t_vectors"
    async with api_client(api_settings) as client:
        assert (
            await client.put(f"/admin/v1/allowlist/{tenant}", headers=PLATFORM)
        ).status_code == 204
        put = await client.put(
            f"/v1/tenants/{tenant}/connections/hubspot",
            json={
                **HUBSPOT_BODY,
                "inbound": {"enabled": True, "client_secret": H_SECRET},
            },
            headers=PLATFORM,
        )
        assert put.status_code == 201, put.text
        h2 = await _post(
            client,
            "hubspot",
            tenant,
            H_BODY,
            {"X-HubSpot-Signature": H2_V1, "X-HubSpot-Signature-Version": "v1"},
        )
        h2_tampered = await _post(
            client,
            "hubspot",
            tenant,
            H_BODY + b" ",
            {"X-HubSpot-Signature": H2_V1, "X-HubSpot-Signature-Version": "v1"},
        )
        h5 = await _post(
            client,
            "hubspot",
            tenant,
            H_BODY,
            {"X-HubSpot-Signature-v3": H5_V3, "X-HubSpot-Request-Timestamp": H5_TIMESTAMP},
        )
    assert (h2.status_code, h2.json()["error"]["code"]) == (400, "malformed_payload")
    assert (h2_tampered.status_code, h5.status_code) == (401, 401)
    assert read_inbound(api_settings, inbound_topic, expect=None, settle=2.0) == []


async def test_hubspot_signed_requests_pass_the_route_and_forged_ones_reach_nothing(
    configured: dict[str, dict[str, str]], api_settings: Settings, inbound_topic: str
) -> None:
    body = hubspot_body(9001)
    now = time.time()
    v3 = hubspot_v3(TENANT, body)
    before = {outcome: _count("hubspot", outcome) for outcome in _HUBSPOT_OUTCOMES}
    async with api_client(api_settings) as client:
        answers = {
            "unsigned": await _post(client, "hubspot", TENANT, body, {}),
            "forged_v3": await _post(
                client, "hubspot", TENANT, body, hubspot_v3(TENANT, body, secret="not-the-secret")
            ),
            "forged_v1": await _post(
                client,
                "hubspot",
                TENANT,
                body,
                legacy_headers("not-the-secret", "POST", PUBLIC_BASE, body),
            ),
            # v3 signed for the API's own URL, not the public one HubSpot calls
            "other_uri": await _post(
                client,
                "hubspot",
                TENANT,
                body,
                {
                    "X-HubSpot-Signature-v3": signature_v3(
                        HUBSPOT_SECRETS[TENANT],
                        "POST",
                        "http://api.test" + path("hubspot", TENANT),
                        body,
                        str(int(now * 1000)),
                    ),
                    "X-HubSpot-Request-Timestamp": str(int(now * 1000)),
                },
            ),
            "stale": await _post(
                client, "hubspot", TENANT, body, hubspot_v3(TENANT, body, now=now - STALE)
            ),
            "future": await _post(
                client, "hubspot", TENANT, body, hubspot_v3(TENANT, body, now=now + STALE)
            ),
            # tenant A's signature to tenant B's URL
            "wrong_tenant": await _post(
                client, "hubspot", OTHER_TENANT, body, hubspot_v3(TENANT, body)
            ),
            "wrong_tenant_secret": await _post(
                client,
                "hubspot",
                OTHER_TENANT,
                body,
                hubspot_v3(OTHER_TENANT, body, secret=HUBSPOT_SECRETS[TENANT]),
            ),
            "unknown_tenant": await _post(
                client, "hubspot", "t_nobody", body, hubspot_v3(TENANT, body)
            ),
            # the documented H2 vector's shape: v1 over a body that is not HubSpot's array,
            # so it authenticates (400, not 401) and produces nothing
            "v1_vector_shape": await _post(
                client,
                "hubspot",
                TENANT,
                H_BODY,
                legacy_headers(HUBSPOT_SECRETS[TENANT], "POST", PUBLIC_BASE, H_BODY),
            ),
            "malformed_event": await _post(
                client,
                "hubspot",
                TENANT,
                b'[{"subscriptionType": "company.propertyChange", "objectId": "x"}]',
                hubspot_v3(
                    TENANT, b'[{"subscriptionType": "company.propertyChange", "objectId": "x"}]'
                ),
            ),
            "v3": await _post(client, "hubspot", TENANT, body, v3),
            "replayed": await _post(client, "hubspot", TENANT, body, v3),
        }
        v1_body = hubspot_body(9002)
        answers["v1"] = await _post(
            client,
            "hubspot",
            TENANT,
            v1_body,
            legacy_headers(HUBSPOT_SECRETS[TENANT], "POST", PUBLIC_BASE, v1_body),
        )
    assert _statuses(answers) == {
        "unsigned": 401,
        "forged_v3": 401,
        "forged_v1": 401,
        "other_uri": 401,
        "stale": 401,
        "future": 401,
        "wrong_tenant": 401,
        "wrong_tenant_secret": 401,
        "unknown_tenant": 401,
        "v1_vector_shape": 400,
        "malformed_event": 400,
        "v3": 202,
        "replayed": 202,
        "v1": 202,
    }
    assert answers["v3"].json() == {"accepted": 1, "duplicates": 0}
    assert answers["replayed"].json() == {"accepted": 0, "duplicates": 1}
    assert answers["v1"].json() == {"accepted": 1, "duplicates": 0}
    assert answers["v1_vector_shape"].json()["error"]["code"] == "malformed_payload"
    # unknown tenant, bad signature and a stale one cannot be told apart
    refused = [answers[n] for n in ("unsigned", "stale", "wrong_tenant", "unknown_tenant")]
    assert len({r.text for r in refused}) == 1

    # every refusal counted by its reason
    counted = {o: _count("hubspot", o) - before[o] for o in _HUBSPOT_OUTCOMES}
    assert counted == _HUBSPOT_OUTCOMES

    events = read_inbound(api_settings, inbound_topic, expect=2, settle=2.0)
    assert sorted(e.company.partner_object_id or "" for e in events) == ["9001", "9002"]
    assert {(e.tenant_id, e.connector) for e in events} == {(TENANT, "hubspot")}
    assert {e.connection_id for e in events} == {configured[TENANT]["hubspot"]}


async def test_pipedrive_basic_auth_passes_the_route_and_forged_requests_reach_nothing(
    configured: dict[str, dict[str, str]], api_settings: Settings, inbound_topic: str
) -> None:
    body = pipedrive_v2_body(77, website="https://www.pd-e2e.example", name="PD Example")
    auth = pipedrive_auth(TENANT)
    async with api_client(api_settings) as client:
        answers = {
            "unsigned": await _post(client, "pipedrive", TENANT, body, {}),
            "forged": await _post(
                client, "pipedrive", TENANT, body, pipedrive_auth(TENANT, password="guessed-pw-1")
            ),
            "bearer": await _post(
                client, "pipedrive", TENANT, body, {"Authorization": "Bearer abc"}
            ),
            "garbled": await _post(
                client, "pipedrive", TENANT, body, {"Authorization": "Basic %%%not-base64"}
            ),
            "wrong_tenant": await _post(client, "pipedrive", OTHER_TENANT, body, auth),
            "unknown_tenant": await _post(client, "pipedrive", "t_nobody", body, auth),
            "not_json": await _post(client, "pipedrive", TENANT, b"{nope", auth),
            "not_pipedrive": await _post(client, "pipedrive", TENANT, b'{"data": 1}', auth),
            "accepted": await _post(client, "pipedrive", TENANT, body, auth),
            "replayed": await _post(client, "pipedrive", TENANT, body, auth),
        }
    assert _statuses(answers) == {
        "unsigned": 401,
        "forged": 401,
        "bearer": 401,
        "garbled": 401,
        "wrong_tenant": 401,
        "unknown_tenant": 401,
        "not_json": 400,
        "not_pipedrive": 400,
        "accepted": 202,
        "replayed": 202,
    }
    assert answers["replayed"].json() == {"accepted": 0, "duplicates": 1}
    (event,) = read_inbound(api_settings, inbound_topic, expect=1, settle=2.0)
    assert (event.tenant_id, event.connector) == (TENANT, "pipedrive")
    assert event.company.partner_object_id == "77"
    assert event.company.domain == "pd-e2e.example"


async def test_standard_webhooks_pass_the_route_and_forged_requests_reach_nothing(
    configured: dict[str, dict[str, str]], api_settings: Settings, inbound_topic: str
) -> None:
    body = interest_body({"domain": "sw-e2e.example"})
    empty = interest_body({})
    signed = standard_signed(TENANT, body)
    now = time.time()
    other_secret = WEBHOOK_SECRETS[OTHER_TENANT]
    async with api_client(api_settings) as client:
        answers = {
            "unsigned": await _post(client, "webhook", TENANT, body, {}),
            "forged": await _post(
                client, "webhook", TENANT, body, standard_signed(TENANT, body, secret=other_secret)
            ),
            "tampered": await _post(
                client,
                "webhook",
                TENANT,
                interest_body({"domain": "evil.example"}),
                signed,
            ),
            "stale": await _post(
                client, "webhook", TENANT, body, standard_signed(TENANT, body, at=now - STALE)
            ),
            "future": await _post(
                client, "webhook", TENANT, body, standard_signed(TENANT, body, at=now + STALE)
            ),
            "malformed_header": await _post(
                client, "webhook", TENANT, body, {**signed, "webhook-timestamp": "soon"}
            ),
            "wrong_tenant": await _post(client, "webhook", OTHER_TENANT, body, signed),
            "unknown_tenant": await _post(client, "webhook", "t_nobody", body, signed),
            "malformed": await _post(
                client,
                "webhook",
                TENANT,
                b'{"type": "company.interest"}',
                standard_signed(TENANT, b'{"type": "company.interest"}'),
            ),
            "no_company_field": await _post(
                client, "webhook", TENANT, empty, standard_signed(TENANT, empty)
            ),
            "accepted": await _post(client, "webhook", TENANT, body, signed),
            "replayed": await _post(client, "webhook", TENANT, body, signed),
        }
    assert _statuses(answers) == {
        "unsigned": 401,
        "forged": 401,
        "tampered": 401,
        "stale": 401,
        "future": 401,
        "malformed_header": 401,
        "wrong_tenant": 401,
        "unknown_tenant": 401,
        "malformed": 400,
        "no_company_field": 400,
        "accepted": 202,
        "replayed": 202,
    }
    assert answers["replayed"].json() == {"accepted": 0, "duplicates": 1}
    (event,) = read_inbound(api_settings, inbound_topic, expect=1, settle=2.0)
    assert (event.tenant_id, event.connector) == (TENANT, "webhook")
    assert event.partner_event_id == signed["webhook-id"]
    assert event.company.domain == "sw-e2e.example"


# -- 1. hypothesis over headers and bodies, per connector -----------------------------------

_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip
)
_HEADERS = {
    "hubspot": [
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
        "Content-Type",
    ],
    "pipedrive": ["Authorization", "Content-Type", "X-Forwarded-For"],
    "webhook": ["webhook-id", "webhook-timestamp", "webhook-signature", "Content-Type"],
}


def _sign(connector: str, tenant: str, body: bytes) -> dict[str, str]:
    if connector == "hubspot":
        return hubspot_v3(tenant, body)
    if connector == "pipedrive":
        return pipedrive_auth(tenant)
    return standard_signed(tenant, body)


def _valid(connector: str) -> bytes:
    if connector == "hubspot":
        return hubspot_body(424242)
    if connector == "pipedrive":
        return pipedrive_v2_body(4242, website="https://fixed.example", name="Fixed")
    return interest_body({"domain": "fixed.example"})


def _bodies(connector: str) -> st.SearchStrategy[bytes]:
    valid: st.SearchStrategy[bytes]
    if connector == "hubspot":
        valid = st.builds(
            lambda object_id, value: hubspot_body(object_id, value=value),
            st.integers(min_value=0, max_value=2**40),
            st.sampled_from(["true", "hot", "false", ""]),
        )
    elif connector == "pipedrive":
        valid = st.builds(
            lambda org, value: pipedrive_v2_body(
                org, website="https://h.example", name="H", value=value
            ),
            st.integers(min_value=1, max_value=2**31),
            st.sampled_from(["37", "38"]),
        )
    else:
        valid = st.builds(
            lambda domain: interest_body({"domain": domain}),
            st.from_regex(r"[a-z]{1,12}\.example", fullmatch=True),
        )
    return st.one_of(
        valid,
        st.binary(max_size=400),
        st.builds(
            lambda v: json.dumps(v).encode(),
            st.recursive(
                st.none() | st.booleans() | st.integers() | _TEXT,
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3)
                ),
                max_leaves=8,
            ),
        ),
    )


@pytest.mark.parametrize("connector", ["hubspot", "pipedrive", "webhook"])
def test_arbitrary_headers_and_bodies_get_a_documented_answer_and_only_202_produces(
    connector: str,
    configured: dict[str, dict[str, str]],
    api_settings: Settings,
    inbound_topic: str,
) -> None:
    accepted = 0
    statuses: set[int] = set()
    with serve(create_api(api_settings)) as base_url, requests.Session() as http:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @example(tenant=TENANT, body=_valid(connector), signed_for=TENANT, mangled={})
        @example(tenant=OTHER_TENANT, body=_valid(connector), signed_for=TENANT, mangled={})
        @example(tenant=TENANT, body=b"\x80[", signed_for=TENANT, mangled={})
        @given(
            tenant=st.sampled_from([TENANT, OTHER_TENANT, "t_nobody"]),
            body=_bodies(connector),
            signed_for=st.sampled_from([None, TENANT, OTHER_TENANT]),
            mangled=st.dictionaries(st.sampled_from(_HEADERS[connector]), _TEXT, max_size=2),
        )
        def probe(
            tenant: str, body: bytes, signed_for: str | None, mangled: dict[str, str]
        ) -> None:
            nonlocal accepted
            headers = _sign(connector, signed_for, body) if signed_for is not None else {}
            headers.update(mangled)
            answer = http.post(
                f"{base_url}{path(connector, tenant)}", data=body, headers=headers, timeout=30
            )
            statuses.add(answer.status_code)
            assert answer.status_code in {202, 400, 401}, answer.text
            if answer.status_code == 202:
                assert signed_for == tenant
                accepted += json.loads(answer.text)["accepted"]
            else:
                for secret in SECRETS:
                    assert secret not in answer.text

        probe()
    assert {202, 400, 401} <= statuses
    assert accepted >= 1
    events = read_inbound(api_settings, inbound_topic, expect=accepted, settle=3.0)
    assert len(events) == accepted
    assert {e.tenant_id for e in events} <= {TENANT, OTHER_TENANT}
    assert {e.connector for e in events} <= {connector}


# -- 4. the IP allowlist --------------------------------------------------------------------

ALLOWED = "203.0.113.0/24"
PROXY = "10.9.0.0/16"


async def test_a_request_from_outside_the_allowlist_is_refused_403_and_reaches_nothing(
    settings: Settings, redis_client: Redis, inbound_topic: str
) -> None:
    _ = redis_client
    plain = intake_settings(settings)
    proxied = intake_settings(settings, trusted_proxies=(PROXY,))
    async with api_client(plain) as client:
        await configure(client, TENANT, allowlist=[ALLOWED])

    def hub(object_id: int) -> tuple[bytes, dict[str, str]]:
        body = hubspot_body(object_id)
        return body, hubspot_v3(TENANT, body)

    statuses: dict[str, int] = {}
    async with api_client(plain, peer="198.51.100.7") as outside:
        body, headers = hub(1)
        statuses["hubspot_outside"] = (
            await _post(outside, "hubspot", TENANT, body, headers)
        ).status_code
        pd = pipedrive_v2_body(5, website="a.example", name="A")
        statuses["pipedrive_outside"] = (
            await _post(outside, "pipedrive", TENANT, pd, pipedrive_auth(TENANT))
        ).status_code
        sw = interest_body({"domain": "a.example"})
        statuses["webhook_outside"] = (
            await _post(outside, "webhook", TENANT, sw, standard_signed(TENANT, sw))
        ).status_code
        # an untrusted peer's X-Forwarded-For is not believed
        body, headers = hub(2)
        statuses["forged_forwarded"] = (
            await _post(
                outside, "hubspot", TENANT, body, {**headers, "X-Forwarded-For": "203.0.113.9"}
            )
        ).status_code
    async with api_client(proxied, peer="10.9.1.1") as via_proxy:
        body, headers = hub(3)
        statuses["proxy_outside"] = (
            await _post(
                via_proxy, "hubspot", TENANT, body, {**headers, "X-Forwarded-For": "198.51.100.7"}
            )
        ).status_code
        body, headers = hub(4)
        statuses["proxy_inside"] = (
            await _post(
                via_proxy, "hubspot", TENANT, body, {**headers, "X-Forwarded-For": "203.0.113.9"}
            )
        ).status_code
    async with api_client(plain, peer="203.0.113.50") as inside:
        sw = interest_body({"domain": "inside.example"})
        statuses["webhook_inside"] = (
            await _post(inside, "webhook", TENANT, sw, standard_signed(TENANT, sw))
        ).status_code
    assert statuses == {
        "hubspot_outside": 403,
        "pipedrive_outside": 403,
        "webhook_outside": 403,
        "forged_forwarded": 403,
        "proxy_outside": 403,
        "proxy_inside": 202,
        "webhook_inside": 202,
    }
    events = read_inbound(settings, inbound_topic, expect=2, settle=2.0)
    assert sorted(e.company.partner_object_id or e.company.domain or "" for e in events) == [
        "4",
        "inside.example",
    ]
