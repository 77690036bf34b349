"""OAuth connections are read with the delivery sink's token source and grant store.

MockTransport partners, an injected clock and an in-memory grant store: an expired token is
refreshed once, saved, then used; a 401 refreshes once; a refused refresh reloads the store
once (adopting a grant another holder saved) before it becomes a review; a connection parked
as ``needs_reauth`` is not read.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connectors.base.inbound import InboundCompany, PartnerReadError
from connectors.base.oauth import OAuthGrant
from connectors.base.partner_read import ReaderSetup
from connectors.hubspot.reader import HubSpotCompanyReader
from connectors.hubspot.reader import reader_for as hubspot_reader_for
from connectors.pipedrive.reader import PipedriveCompanyReader
from connectors.pipedrive.reader import reader_for as pipedrive_reader_for
from processors.connection_health import Breaker, ConnectionHealth, ConnectionState
from processors.inbound.models import InboundReview
from processors.inbound.readers import ConnectionReaders
from processors.inbound.service import InboundRecord, InboundService
from processors.secrets import KeyRing, SecretBox
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicMap
from tests.unit.inbound.fakes import (
    CONNECTION,
    TENANT,
    FakeConnections,
    FakeDirectory,
    FakeLinks,
    FakeMarks,
    FakeReviews,
    inbound_event,
)

NOW = 1_800_000_000.0
TOPICS = TopicMap("")
BOX = SecretBox(KeyRing.from_env_value("k1:" + base64.b64encode(bytes(range(32))).decode()))
COMPANY_PATH = "/crm/v3/objects/companies/101"


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class MemoryGrants:
    """The kit's GrantStore in memory: what was saved, what reload answers."""

    def __init__(self, stored: OAuthGrant | None = None) -> None:
        self.stored = stored
        self.saved: list[OAuthGrant] = []
        self.reloads = 0

    async def save(self, grant: OAuthGrant) -> None:
        self.saved.append(grant)
        self.stored = grant

    async def reload(self) -> OAuthGrant | None:
        self.reloads += 1
        return self.stored


class HubSpot:
    """A HubSpot with a token endpoint and one company, accepting the tokens it issued."""

    def __init__(self, *, valid: set[str], refresh_answers: list[httpx.Response]) -> None:
        self.valid = set(valid)
        self.refresh_answers = refresh_answers
        self.refuse_reads = False
        self.requests: list[httpx.Request] = []
        self.refresh_forms: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/v1/token":
            self.refresh_forms.append(parse_qs(request.content.decode()))
            answer = self.refresh_answers.pop(0)
            if answer.status_code == 200:
                self.valid.add(json.loads(answer.content)["access_token"])
            return answer
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid or self.refuse_reads:
            return httpx.Response(401, json={"category": "EXPIRED_AUTHENTICATION"})
        return httpx.Response(
            200, json={"id": "101", "properties": {"name": "Acme", "domain": "acme-robotics.se"}}
        )

    def reads(self) -> list[str]:
        """The bearer tokens the company reads were sent with, in order."""
        return [
            r.headers["authorization"].removeprefix("Bearer ")
            for r in self.requests
            if r.url.path == COMPANY_PATH
        ]

    def refreshes(self) -> int:
        return len(self.refresh_forms)


def _issued(access: str, refresh: str, expires_in: int = 1800) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": access, "refresh_token": refresh, "expires_in": expires_in}
    )


def _oauth_settings(
    *, access: str | None = "at-1", expires_at: float | None = None
) -> dict[str, object]:
    auth: dict[str, object] = {
        "type": "oauth",
        "client_id": "client-1",
        "client_secret": "client-secret",
        "refresh_token": "rt-1",
    }
    if access is not None:
        auth["access_token"] = access
        auth["expires_at"] = NOW + 3600 if expires_at is None else expires_at
    return {"auth": auth, "base_url": "http://127.0.0.1:9"}


def _hubspot_reader(
    partner: HubSpot,
    grants: MemoryGrants,
    settings: dict[str, object],
    clock: FakeClock | None = None,
) -> HubSpotCompanyReader:
    setup = ReaderSetup(
        client=httpx.AsyncClient(transport=httpx.MockTransport(partner)),
        allow_private_networks=True,
        grants=grants,
        clock=clock or FakeClock(),
    )
    reader = hubspot_reader_for(settings, setup)
    assert isinstance(reader, HubSpotCompanyReader)
    return reader


async def test_an_expired_token_is_refreshed_once_saved_then_used_for_the_read() -> None:
    partner = HubSpot(valid={"at-1"}, refresh_answers=[_issued("at-2", "rt-2")])
    grants = MemoryGrants()
    reader = _hubspot_reader(partner, grants, _oauth_settings(expires_at=NOW - 10))

    found = await reader.company("101")

    assert found == InboundCompany(partner_object_id="101", name="Acme", domain="acme-robotics.se")
    assert partner.refreshes() == 1
    assert partner.refresh_forms[0]["refresh_token"] == ["rt-1"]
    assert partner.refresh_forms[0]["grant_type"] == ["refresh_token"]
    assert partner.reads() == ["at-2"]
    (saved,) = grants.saved
    assert (saved.access_token.get_secret_value(), saved.refresh_token.get_secret_value()) == (
        "at-2",
        "rt-2",
    )
    assert saved.expires_at == NOW + 1800
    await reader.company("101")  # the renewed token is kept: no second refresh
    assert partner.refreshes() == 1
    assert partner.reads() == ["at-2", "at-2"]


async def test_a_401_refreshes_once_and_the_read_is_retried_with_the_new_token() -> None:
    partner = HubSpot(valid=set(), refresh_answers=[_issued("at-2", "rt-2")])
    grants = MemoryGrants()
    reader = _hubspot_reader(partner, grants, _oauth_settings())  # at-1 unexpired, but revoked

    found = await reader.company("101")

    assert found is not None
    assert partner.reads() == ["at-1", "at-2"]
    assert partner.refreshes() == 1
    assert [g.refresh_token.get_secret_value() for g in grants.saved] == ["rt-2"]


async def test_a_401_after_the_refresh_is_auth_failed_without_a_second_refresh() -> None:
    partner = HubSpot(valid=set(), refresh_answers=[_issued("at-2", "rt-2")])
    partner.refuse_reads = True
    reader = _hubspot_reader(partner, MemoryGrants(), _oauth_settings())

    with pytest.raises(PartnerReadError) as raised:
        await reader.company("101")
    assert raised.value.reason == "auth_failed"
    assert partner.reads() == ["at-1", "at-2"]
    assert partner.refreshes() == 1


async def test_a_refused_refresh_adopts_the_grant_another_holder_saved() -> None:
    """The sink rotated the refresh token meanwhile: the reader's refused refresh reloads the
    store once and reads with the sink's access token, without refreshing again."""
    partner = HubSpot(
        valid={"at-sink"},
        refresh_answers=[httpx.Response(400, json={"error": "invalid_grant"})],
    )
    sink_grant = OAuthGrant(
        access_token=SecretStr("at-sink"),
        refresh_token=SecretStr("rt-sink"),
        expires_at=NOW + 1200,
    )
    grants = MemoryGrants(sink_grant)
    reader = _hubspot_reader(partner, grants, _oauth_settings(expires_at=NOW - 1))

    found = await reader.company("101")

    assert found is not None
    assert partner.refreshes() == 1
    assert grants.reloads == 1
    assert partner.reads() == ["at-sink"]
    assert grants.saved == []  # nothing renewed, nothing overwritten


async def test_a_refused_refresh_with_nothing_newer_stored_is_auth_failed() -> None:
    partner = HubSpot(
        valid=set(), refresh_answers=[httpx.Response(400, json={"error": "invalid_grant"})]
    )
    grants = MemoryGrants()
    reader = _hubspot_reader(partner, grants, _oauth_settings(access=None))

    with pytest.raises(PartnerReadError) as raised:
        await reader.company("101")
    assert raised.value.reason == "auth_failed"
    assert partner.reads() == []
    assert grants.reloads >= 1
    assert grants.saved == []


async def test_pipedrive_oauth_refreshes_with_basic_auth_and_reads_at_the_granted_host() -> None:
    requests: list[httpx.Request] = []

    def pipedrive(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/oauth/token":
            return httpx.Response(
                200,
                json={
                    "access_token": "pd-at-2",
                    "refresh_token": "pd-rt-2",
                    "expires_in": 3599,
                    "api_domain": "https://acme-2.pipedrive.com",
                },
            )
        return httpx.Response(200, json={"success": True, "data": {"name": "Acme"}})

    grants = MemoryGrants()
    settings = {
        "auth": {
            "type": "oauth",
            "client_id": "pd-client",
            "client_secret": "pd-secret",
            "refresh_token": "pd-rt-1",
            "api_domain": "https://acme.pipedrive.com",
        },
        "domain_field_key": "a" * 40,
    }
    setup = ReaderSetup(
        client=httpx.AsyncClient(transport=httpx.MockTransport(pipedrive)),
        grants=grants,
        clock=FakeClock(),
    )
    reader = pipedrive_reader_for(settings, setup)
    assert isinstance(reader, PipedriveCompanyReader)

    found = await reader.company("7")

    assert found == InboundCompany(partner_object_id="7", name="Acme")
    refresh, read = requests
    assert refresh.url == "https://oauth.pipedrive.com/oauth/token"
    expected = base64.b64encode(b"pd-client:pd-secret").decode()
    assert refresh.headers["authorization"] == f"Basic {expected}"
    assert str(read.url) == "https://acme-2.pipedrive.com/api/v2/organizations/7"
    assert read.headers["authorization"] == "Bearer pd-at-2"
    assert [g.api_domain for g in grants.saved] == ["https://acme-2.pipedrive.com"]


class Parked:
    """The delivery side's health of one connection."""

    def __init__(self, state: ConnectionState | None) -> None:
        self.state = state

    async def read(self, destination: str) -> tuple[ConnectionState | None, Breaker]:
        return self.state, Breaker()


def _connection(settings: dict[str, object], updated_at: datetime) -> ConnectionRecord:
    return ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector("hubspot"),
        connection_id=CONNECTION,
        settings=seal_settings(settings, box=BOX, tenant_id=TENANT, connection_id=CONNECTION),
        updated_at=updated_at,
    )


def _service(readers: ConnectionReaders, connection: ConnectionRecord) -> InboundService:
    directory = FakeDirectory()
    directory.upsert("co_acme", name="Acme Robotics AB", domain="acme-robotics.se")
    return InboundService(
        topics=TOPICS,
        directory=directory,
        links=FakeLinks(),
        connections=FakeConnections(connection),
        marks=FakeMarks(),
        reviews=FakeReviews(),
        readers=readers,
    )


def _record() -> InboundRecord:
    event = inbound_event(connector="hubspot", partner_object_id="101")
    return InboundRecord(
        "integrations.inbound", 0, 1, TENANT.encode(), event.model_dump_json().encode()
    )


async def test_a_connection_parked_as_needs_reauth_is_a_review_and_not_read() -> None:
    seen: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    saved_at = datetime(2026, 12, 1, tzinfo=UTC)
    parked = ConnectionState(
        ConnectionHealth.NEEDS_REAUTH,
        "refresh refused",
        (saved_at + timedelta(hours=1)).timestamp(),
    )
    readers = ConnectionReaders(
        box=BOX,
        base_urls={"hubspot": "http://127.0.0.1:9"},
        client=httpx.AsyncClient(transport=httpx.MockTransport(partner)),
        health=Parked(parked),
    )
    connection = _connection(_oauth_settings(), saved_at)

    plan = await _service(readers, connection).handle(_record())

    (output,) = plan.outputs
    assert output.topic == TOPICS.match_review
    review = InboundReview.model_validate_json(output.value)
    assert review.reason == "partner_needs_reauth"
    assert "authorised again" in review.explanation
    assert seen == []
    await readers.aclose()


async def test_a_connection_saved_after_it_was_parked_is_read_again() -> None:
    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "101", "properties": {"domain": "acme-robotics.se"}})

    parked_at = datetime(2026, 12, 1, tzinfo=UTC)
    parked = ConnectionState(ConnectionHealth.NEEDS_REAUTH, "401", parked_at.timestamp())
    readers = ConnectionReaders(
        box=BOX,
        base_urls={"hubspot": "http://127.0.0.1:9"},
        client=httpx.AsyncClient(transport=httpx.MockTransport(partner)),
        health=Parked(parked),
    )
    connection = _connection(
        {"auth": {"type": "private_app", "token": "pat-new"}}, parked_at + timedelta(minutes=5)
    )

    plan = await _service(readers, connection).handle(_record())

    (output,) = plan.outputs
    assert output.topic == TOPICS.bookmarks
    await readers.aclose()


async def test_without_a_grant_store_an_oauth_connection_has_no_reader() -> None:
    readers = ConnectionReaders(box=BOX, base_urls={"hubspot": "http://127.0.0.1:9"})
    connection = _connection(_oauth_settings(), datetime(2026, 12, 1, tzinfo=UTC))

    plan = await _service(readers, connection).handle(_record())

    (output,) = plan.outputs
    review = InboundReview.model_validate_json(output.value)
    assert review.reason == "partner_read_unavailable"
    await readers.aclose()
