"""The inbound service: what one ``integrations.inbound`` record gives, over in-memory stores."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from processors.inbound.directory import directory_update
from processors.inbound.models import Bookmark, InboundReview, bookmark_id_for
from processors.inbound.service import InboundRecord, InboundService, Plan
from processors.tenants.models import ConnectionRecord, Connector
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
ALLOWED_TOPICS = {TOPICS.bookmarks, TOPICS.match_review, TOPICS.invalid_events}


class Harness:
    def __init__(self, connection: ConnectionRecord | None = None) -> None:
        self.directory = FakeDirectory()
        self.directory.upsert("co_acme", name="Acme Robotics AB", domain="acme-robotics.se")
        self.directory.upsert("co_nord_1", name="Nordic Widgets")
        self.directory.upsert("co_nord_2", name="Nordic Widgets AB")
        self.marks = FakeMarks()
        self.reviews = FakeReviews()
        self.service = InboundService(
            topics=TOPICS,
            directory=self.directory,
            links=FakeLinks({f"{CONNECTION}:hs_42": "co_acme"}),
            connections=FakeConnections(connection),
            marks=self.marks,
            reviews=self.reviews,
        )
        self.offset = 0

    def record(self, value: bytes | None, key: bytes | None = TENANT.encode()) -> InboundRecord:
        self.offset += 1
        return InboundRecord("integrations.inbound", 0, self.offset, key, value)

    async def run(self, value: bytes | None, key: bytes | None = TENANT.encode()) -> Plan:
        """Handle a record as the agent does: plan, (produce), then the after-ack write."""
        plan = await self.service.handle(self.record(value, key))
        await plan.after_ack()
        return plan


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def test_a_domain_match_is_one_bookmark_and_redeliveries_none(harness: Harness) -> None:
    event = inbound_event(domain="acme-robotics.se")
    value = event.model_dump_json().encode()
    first = await harness.run(value)
    (output,) = first.outputs
    assert output.topic == TOPICS.bookmarks
    assert output.key == TENANT.encode()
    bookmark = Bookmark.model_validate_json(output.value)
    assert bookmark.bookmark_id == bookmark_id_for(event.inbound_id)
    assert (bookmark.company_id, bookmark.match.strategy) == ("co_acme", "domain")
    assert bookmark.source.connection_id == CONNECTION
    assert bookmark.source.partner_event_id == event.partner_event_id
    for _ in range(2):
        again = await harness.run(value)
        assert again.outputs == ()


async def test_a_linked_partner_object_is_partner_id(harness: Harness) -> None:
    plan = await harness.run(
        inbound_event(connector="hubspot", partner_object_id="hs_42").model_dump_json().encode()
    )
    (output,) = plan.outputs
    bookmark = Bookmark.model_validate_json(output.value)
    assert (bookmark.company_id, bookmark.match.strategy) == ("co_acme", "partner_id")
    assert bookmark.match.confidence == 1.0


async def test_a_shared_name_is_one_review_even_when_redelivered(harness: Harness) -> None:
    event = inbound_event(name="Nordic Widgets")
    value = event.model_dump_json().encode()
    plan = await harness.run(value)
    (output,) = plan.outputs
    assert output.topic == TOPICS.match_review
    review = InboundReview.model_validate_json(output.value)
    assert review.reason == "ambiguous"
    assert {c.company_id for c in review.candidates} == {"co_nord_1", "co_nord_2"}
    assert list(harness.reviews.reviews) == [(TENANT, review.review_id)]
    assert (await harness.run(value)).outputs == ()


async def test_nothing_is_recorded_before_the_outputs_are_acknowledged(harness: Harness) -> None:
    plan = await harness.service.handle(
        harness.record(inbound_event(domain="acme-robotics.se").model_dump_json().encode())
    )
    assert harness.marks.marked == set()
    await plan.after_ack()
    assert len(harness.marks.marked) == 1


async def test_the_connection_match_policy_is_used() -> None:
    connection = ConnectionRecord(
        tenant_id=TENANT,
        connector=Connector("webhook"),
        connection_id=CONNECTION,
        settings={"match_policy": {"company_strategies": ["company_name"]}},
    )
    harness = Harness(connection)
    plan = await harness.run(
        inbound_event(domain="acme-robotics.se", name="Nordic Widgets").model_dump_json().encode()
    )
    (output,) = plan.outputs
    assert output.topic == TOPICS.match_review


def _dead_letter(plan: Plan) -> dict[str, bytes]:
    (output,) = plan.outputs
    assert output.topic == TOPICS.invalid_events
    return dict(output.headers)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, b"empty"),
        (b"", b"empty"),
        (b"{not json", b"validation_failed"),
        (b"[]", b"validation_failed"),
        (json.dumps({"inbound_id": "in_x"}).encode(), b"validation_failed"),
        (b"x" * (300 * 1024), b"oversized"),
    ],
)
async def test_a_malformed_record_is_dead_lettered(
    harness: Harness, value: bytes | None, reason: bytes
) -> None:
    headers = _dead_letter(await harness.run(value))
    assert headers["qi.error.reason"] == reason
    assert headers["qi.original.topic"] == b"integrations.inbound"


async def test_a_record_keyed_for_another_tenant_is_dead_lettered(harness: Harness) -> None:
    value = inbound_event(domain="acme-robotics.se").model_dump_json().encode()
    headers = _dead_letter(await harness.run(value, key=b"t_other"))
    assert headers["qi.error.reason"] == b"key_mismatch"
    assert harness.marks.marked == set()


async def test_the_dead_letter_detail_never_quotes_the_input(harness: Harness) -> None:
    document: dict[str, Any] = json.loads(inbound_event(name="x").model_dump_json())
    document["company"]["name"] = "secret-person-name@example.com" * 100
    headers = _dead_letter(await harness.run(json.dumps(document).encode()))
    assert b"secret-person-name" not in headers["qi.error.detail"]


_text = st.one_of(st.none(), st.text(min_size=1, max_size=60))
_company = st.fixed_dictionaries(
    {},
    optional={
        "partner_object_id": _text,
        "queast_company_id": st.one_of(_text, st.sampled_from(["co_acme", "co_nord_1"])),
        "domain": st.one_of(_text, st.sampled_from(["acme-robotics.se", "https://x.io/"])),
        "name": st.one_of(_text, st.sampled_from(["Nordic Widgets", "Acme Robotics"])),
        "linkedin_url": _text,
        "signal_id": _text,
    },
)
_documents = st.fixed_dictionaries(
    {
        "inbound_id": st.one_of(st.just("in_" + "a" * 32), st.text(max_size=40), st.integers()),
        "tenant_id": st.sampled_from([TENANT, "t_2", "", "bad tenant"]),
        "connector": st.sampled_from(["webhook", "hubspot", "pipedrive", "nope"]),
        "connection_id": st.sampled_from([CONNECTION, "x" * 90]),
        "partner_event_id": st.text(max_size=20),
        "company": _company,
        "received_at": st.sampled_from(["2026-12-04T10:00:00Z", "yesterday"]),
        "correlation_id": st.text(max_size=10),
    },
    optional={
        "kind": st.sampled_from(["company.interest", "signal.emitted"]),
        "note": _text,
        "signal": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_documents, keyed=st.booleans())
async def test_any_inbound_payload_only_ever_gives_a_bookmark_a_review_or_a_dead_letter(
    document: dict[str, Any], keyed: bool
) -> None:
    harness = Harness()
    key = str(document["tenant_id"]).encode() if keyed else None
    plan = await harness.run(json.dumps(document).encode(), key=key)
    assert len(plan.outputs) == 1
    (output,) = plan.outputs
    assert output.topic in ALLOWED_TOPICS
    if output.topic == TOPICS.bookmarks:
        bookmark = json.loads(output.value)
        assert set(bookmark) == set(Bookmark.model_fields)
        assert not any("signal" in field for field in bookmark)


def test_no_domain_event_other_than_a_company_changes_the_directory() -> None:
    base = {
        "event_id": "0d4c6a1e-3f7b-4bb8-9a34-1e8e3c5c0a11",
        "schema_version": "1.0",
        "tenant_id": TENANT,
        "occurred_at": "2026-11-26T05:00:00Z",
    }
    signal = {**base, "event_type": "signal.emitted", "data": {"signal_id": "s", "version": 1}}
    assert directory_update(json.dumps(signal).encode()) is None
    assert directory_update(b"{broken") is None
    deleted = {**base, "event_type": "company.deleted", "data": {"company_id": "c", "version": 4}}
    update = directory_update(json.dumps(deleted).encode())
    assert update is not None
    assert (update.entry.deleted, update.entry.version) == (True, 4)
    upserted = {
        **base,
        "event_type": "company.upserted",
        "data": {
            "company_id": "c",
            "version": 5,
            "name": "The Acme Robotics AB",
            "domains": ["www.acme.se", "gmail.com"],
            "website": "https://shop.acme.co.uk/x",
            "linkedin_url": "https://uk.linkedin.com/company/Acme/about",
        },
    }
    update = directory_update(json.dumps(upserted).encode())
    assert update is not None
    assert update.entry.domains == ("acme.co.uk", "acme.se")
    assert update.entry.linkedin == "linkedin.com/company/acme"
    assert update.entry.normalized_name


class _BrokenDirectory(FakeDirectory):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def by_domain(self, tenant_id: str, domain: str) -> list[str]:
        raise self.error


async def test_a_bug_in_resolution_dead_letters_the_record_and_redis_errors_are_raised() -> None:
    harness = Harness()
    value = inbound_event(domain="acme-robotics.se").model_dump_json().encode()
    harness.service = InboundService(
        topics=TOPICS,
        directory=_BrokenDirectory(KeyError("quoted input")),
        links=FakeLinks(),
        connections=FakeConnections(),
        marks=harness.marks,
        reviews=harness.reviews,
    )
    headers = _dead_letter(await harness.run(value))
    assert headers["qi.error.reason"] == b"internal_error"
    assert b"quoted input" not in headers["qi.error.detail"]
    harness.service = InboundService(
        topics=TOPICS,
        directory=_BrokenDirectory(RedisConnectionError("down")),
        links=FakeLinks(),
        connections=FakeConnections(),
        marks=harness.marks,
        reviews=harness.reviews,
    )
    with pytest.raises(RedisConnectionError):
        await harness.run(value)
