"""The inbound agent's handler: produce, wait for acknowledgements, then record; retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from processors.agents.inbound import InboundHandler
from processors.inbound.service import InboundRecord, InboundService, Output
from processors.topics import TopicMap
from tests.unit.inbound.fakes import (
    TENANT,
    FakeConnections,
    FakeDirectory,
    FakeLinks,
    FakeMarks,
    FakeReviews,
    inbound_event,
)

TOPICS = TopicMap("")


class FlakyMarks(FakeMarks):
    """Marks whose first write fails as Redis would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def mark(self, tenant_id: str, bookmark_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("down")
        await super().mark(tenant_id, bookmark_id)


def _service(marks: FakeMarks) -> InboundService:
    directory = FakeDirectory()
    directory.upsert("co_acme", name="Acme Robotics AB", domain="acme-robotics.se")
    return InboundService(
        topics=TOPICS,
        directory=directory,
        links=FakeLinks(),
        connections=FakeConnections(),
        marks=marks,
        reviews=FakeReviews(),
    )


async def test_the_mark_is_written_after_the_broker_acknowledged_and_retried() -> None:
    marks = FlakyMarks()
    sent: list[Output] = []
    acknowledged: list[Output] = []
    sleeps: list[float] = []

    async def send(output: Output) -> Awaitable[object]:
        sent.append(output)

        async def ack() -> None:
            assert not marks.marked  # nothing is recorded before the acknowledgement
            acknowledged.append(output)

        return asyncio.ensure_future(ack())

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    value = inbound_event(domain="acme-robotics.se").model_dump_json().encode()
    record = InboundRecord(TOPICS.inbound, 0, 7, TENANT.encode(), value)
    outcome = await InboundHandler(_service(marks), send, sleep=sleep).handle(record)
    assert outcome == "bookmark.domain"
    assert len(marks.marked) == 1
    assert len(sleeps) == 1
    # only the failed write was retried: the bookmark was produced once
    assert [o.topic for o in sent] == [TOPICS.bookmarks]
    assert acknowledged == sent


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    company=st.fixed_dictionaries(
        {},
        optional={
            "partner_object_id": st.text(min_size=1, max_size=20),
            "queast_company_id": st.sampled_from(["co_acme", "co_x"]),
            "domain": st.one_of(st.text(min_size=1, max_size=30), st.just("acme-robotics.se")),
            "name": st.one_of(st.text(min_size=1, max_size=30), st.just("Acme Robotics")),
            "linkedin_url": st.text(min_size=1, max_size=40),
        },
    ),
    connector=st.sampled_from(["webhook", "hubspot", "pipedrive"]),
    mangle=st.booleans(),
)
async def test_whatever_a_highlight_holds_the_handler_writes_only_bookmarks_or_reviews(
    company: dict[str, str], connector: str, mangle: bool
) -> None:
    written: list[str] = []

    async def send(output: Output) -> Awaitable[object]:
        written.append(output.topic)
        return asyncio.ensure_future(asyncio.sleep(0))

    value = inbound_event(connector=connector, **company).model_dump_json().encode()
    if mangle:
        value = value.replace(b'"company"', b'"signal"')
    record = InboundRecord(TOPICS.inbound, 0, 1, TENANT.encode(), value)
    await InboundHandler(_service(FakeMarks()), send).handle(record)
    (topic,) = written
    allowed = {TOPICS.bookmarks, TOPICS.match_review}
    assert topic in (allowed | {TOPICS.invalid_events} if mangle else allowed)
