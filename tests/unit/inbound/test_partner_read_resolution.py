"""Highlights that carry only a partner object id: read the partner's company, then match it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
import pytest

from connectors.base.inbound import InboundCompany, PartnerCompanyReader, PartnerReadError
from connectors.hubspot.reader import HubSpotCompanyReader
from connectors.pipedrive.reader import PipedriveCompanyReader
from processors.identity.resolver import MatchPolicy
from processors.inbound.models import Bookmark, InboundReview
from processors.inbound.readers import ConnectionReaders
from processors.inbound.resolution import Resolution, resolve
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

TOPICS = TopicMap("")
BOX = SecretBox(KeyRing.from_env_value("k1:" + base64.b64encode(bytes(range(32))).decode()))


class FakeReader:
    def __init__(self, answer: InboundCompany | PartnerReadError | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def company(self, partner_object_id: str) -> InboundCompany | None:
        self.asked.append(partner_object_id)
        if isinstance(self.answer, PartnerReadError):
            raise self.answer
        return self.answer


@pytest.fixture
def directory() -> FakeDirectory:
    found = FakeDirectory()
    found.upsert("co_acme", name="Acme Robotics AB", domain="acme-robotics.se")
    return found


async def _resolve(
    directory: FakeDirectory, reader: PartnerCompanyReader | None, **company: str
) -> Resolution:
    return await resolve(
        inbound_event(connector="hubspot", **company),
        directory=directory,
        links=FakeLinks(),
        policy=MatchPolicy(),
        reader=reader,
    )


async def test_the_read_company_is_matched_by_domain(directory: FakeDirectory) -> None:
    reader = FakeReader(InboundCompany(partner_object_id="101", domain="acme-robotics.se"))
    found = await _resolve(directory, reader, partner_object_id="101")
    assert found.company_id == "co_acme"
    assert found.match is not None
    assert found.match.strategy == "domain"
    assert reader.asked == ["101"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "partner_object_not_found"),
        (PartnerReadError("auth_failed", "refused"), "partner_auth_failed"),
        (PartnerReadError("needs_reauth", "parked"), "partner_needs_reauth"),
        (PartnerReadError("failed", "still 429"), "partner_read_failed"),
        (InboundCompany(partner_object_id="101"), "no_candidate"),
    ],
)
async def test_an_unreadable_partner_object_is_a_review(
    directory: FakeDirectory, answer: InboundCompany | PartnerReadError | None, reason: str
) -> None:
    found = await _resolve(directory, FakeReader(answer), partner_object_id="101")
    assert (found.company_id, found.reason) == (None, reason)


async def test_no_reader_stays_unavailable_and_fields_in_the_event_need_no_read(
    directory: FakeDirectory,
) -> None:
    found = await _resolve(directory, None, partner_object_id="101")
    assert found.reason == "partner_read_unavailable"
    reader = FakeReader(PartnerReadError("failed", "must not be asked"))
    found = await _resolve(directory, reader, partner_object_id="101", domain="acme-robotics.se")
    assert found.company_id == "co_acme"
    assert reader.asked == []


def _hubspot_connection(
    settings: dict[str, object], connection_id: str = CONNECTION
) -> ConnectionRecord:
    return ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector("hubspot"),
        connection_id=connection_id,
        settings=seal_settings(settings, box=BOX, tenant_id=TENANT, connection_id=connection_id),
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


def _record(**company: str) -> InboundRecord:
    event = inbound_event(connector="hubspot", **company)
    return InboundRecord(
        "integrations.inbound", 0, 1, TENANT.encode(), event.model_dump_json().encode()
    )


async def test_the_service_reads_with_the_connections_sealed_token_and_bookmarks() -> None:
    seen: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "101", "properties": {"domain": "acme-robotics.se"}})

    readers = ConnectionReaders(
        box=BOX,
        base_urls={"hubspot": "http://127.0.0.1:9"},
        client=httpx.AsyncClient(transport=httpx.MockTransport(partner)),
    )
    connection = _hubspot_connection({"auth": {"type": "private_app", "token": "pat-secret"}})
    plan = await _service(readers, connection).handle(_record(partner_object_id="101"))
    (output,) = plan.outputs
    assert output.topic == TOPICS.bookmarks
    bookmark = Bookmark.model_validate_json(output.value)
    assert (bookmark.company_id, bookmark.match.strategy) == ("co_acme", "domain")
    (request,) = seen
    assert request.url.host == "127.0.0.1"
    assert request.headers["authorization"] == "Bearer pat-secret"
    assert await readers.reader(connection) is await readers.reader(connection)
    await readers.aclose()


async def test_a_malformed_partner_answer_is_a_review_not_a_crash() -> None:
    readers = ConnectionReaders(
        box=BOX,
        base_urls={"hubspot": "http://127.0.0.1:9"},
        client=httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _: httpx.Response(200, content=b"<html>"))
        ),
    )
    connection = _hubspot_connection({"auth": {"type": "private_app", "token": "pat-secret"}})
    plan = await _service(readers, connection).handle(_record(partner_object_id="101"))
    (output,) = plan.outputs
    assert output.topic == TOPICS.match_review
    review = InboundReview.model_validate_json(output.value)
    assert review.reason == "partner_read_failed"
    assert "pat-secret" not in output.value.decode()
    await readers.aclose()


async def test_readers_decline_oauth_unknown_connectors_and_invalid_settings() -> None:
    readers = ConnectionReaders(box=BOX, base_urls={})
    oauth = _hubspot_connection(
        {"auth": {"type": "oauth", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}
    )
    assert await readers.reader(oauth) is None
    invalid = _hubspot_connection({"auth": {"type": "private_app", "token": " "}}, "conn_h2")
    assert await readers.reader(invalid) is None
    webhook = ConnectionRecord(
        tenant_id=TENANT, connector=Connector("webhook"), connection_id="conn_w", settings={}
    )
    assert await readers.reader(webhook) is None
    pipedrive = ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector("pipedrive"),
        connection_id="conn_p",
        settings=seal_settings(
            {"auth": {"type": "api_token", "token": "pd"}, "domain_field_key": "abc"},
            box=BOX,
            tenant_id=TENANT,
            connection_id="conn_p",
        ),
        updated_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    assert isinstance(await readers.reader(pipedrive), PipedriveCompanyReader)
    hubspot = _hubspot_connection({"auth": {"type": "private_app", "token": "pat"}}, "conn_h3")
    assert isinstance(await readers.reader(hubspot), HubSpotCompanyReader)
    await readers.aclose()
