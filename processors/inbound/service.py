"""The inbound service: one ``integrations.inbound`` record in, what to produce and record out.

Called by the inbound agent (:mod:`processors.agents.inbound`) for each record, in partition
order. It returns a :class:`Plan`: the records to produce and what to write to Redis once the
broker acknowledged all of them (the agent does both, then acknowledges the input). A record
is exactly one of:

- a **bookmark** on ``queast.bookmarks`` (key the tenant id), then its mark
  (:class:`~processors.inbound.reviews.BookmarkMarks`);
- a **review** on ``integrations.match-review`` (key the tenant id), then stored in the
  tenant's review queue (:class:`~processors.inbound.reviews.ReviewStore`);
- **nothing**, when the highlight's bookmark was already produced or its review already stored
  (a redelivery of the same ``inbound_id``);
- a **dead letter** on ``integrations.dlq.invalid-events`` for a record that is not an
  :class:`~processors.inbound.models.InboundEvent` (reasons ``empty``, ``oversized``,
  ``validation_failed``, ``key_mismatch``) or whose resolution raised something other than a
  Redis or network error (``internal_error``). Inbound has no dead-letter topic of its own:
  the invalid-events topic already holds every record the service could not read, with the
  same ``qi.error.*`` and ``qi.original.*`` headers as the routing agent's, so one redrive
  tool serves both (``qi.original.topic`` says which input it came from). The original key
  and value are copied while they fit in :data:`MAX_DEAD_LETTER_PAYLOAD_BYTES`.

Redis and network errors (:data:`RETRIED_ERRORS`) are raised for the agent to retry; the
service writes nothing before the plan is carried out, so a retry starts clean.

The connection's match policy is read from its stored settings (``match_policy``); a
connection that no longer exists, or another connection id than the event's, or a policy that
does not validate, falls back to the default policy (logged). The partner's company reader
(:class:`Readers`, for an event that carries only the partner object id) is asked for the
same connection only; no connection, no reader (the review says ``partner_read_unavailable``).

Nothing here produces to any other topic: no export, no domain event, no Signal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError
from redis.exceptions import RedisError

from connectors.base.inbound import PartnerCompanyReader
from processors.identity.resolver import MatchPolicy
from processors.inbound.models import (
    Bookmark,
    InboundEvent,
    InboundReview,
    bookmark_id_for,
    review_id_for,
)
from processors.inbound.resolution import Directory, PartnerLinks, resolve
from processors.records import ConsumedRecord, Headers, ProducedRecord
from processors.tenants.models import ConnectionRecord, Connector
from processors.topics import TopicMap

__all__ = [
    "MAX_DEAD_LETTER_PAYLOAD_BYTES",
    "MAX_INBOUND_BYTES",
    "RETRIED_ERRORS",
    "Connections",
    "InboundRecord",
    "InboundService",
    "Marks",
    "Output",
    "Plan",
    "Readers",
    "Reviews",
]

logger = logging.getLogger(__name__)

MAX_INBOUND_BYTES = 256 * 1024
"""The largest ``integrations.inbound`` value read (an InboundEvent is a few KiB at most)."""
MAX_DEAD_LETTER_PAYLOAD_BYTES = 512 * 1024
RETRIED_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)
"""Errors the service lets out for the agent to retry."""
_MAX_DETAIL = 1000


InboundRecord = ConsumedRecord
"""One record of ``integrations.inbound`` with its coordinates."""


Output = ProducedRecord
"""One record the inbound agent produces (a bookmark, a review or a dead letter)."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one record gives: records to produce, then what to record once acknowledged."""

    outputs: tuple[Output, ...] = ()
    after_ack: Callable[[], Awaitable[None]] = field(default=_nothing)
    outcome: str = "duplicate"


class Connections(Protocol):
    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None: ...


class Readers(Protocol):
    """:class:`~processors.inbound.readers.ConnectionReaders`, or a fake in unit tests."""

    async def reader(self, connection: ConnectionRecord) -> PartnerCompanyReader | None: ...


class Marks(Protocol):
    """:class:`~processors.inbound.reviews.BookmarkMarks`, or a fake in unit tests."""

    async def produced(self, tenant_id: str, bookmark_id: str) -> bool: ...
    async def mark(self, tenant_id: str, bookmark_id: str) -> None: ...


class Reviews(Protocol):
    """:class:`~processors.inbound.reviews.ReviewStore`, or a fake in unit tests."""

    async def get(self, tenant_id: str, review_id: str) -> InboundReview | None: ...
    async def add(self, review: InboundReview) -> bool: ...


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _validation_detail(exc: ValidationError) -> str:
    """Where and what kind of errors, never the input values."""
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['type']}"
        for error in exc.errors(include_url=False, include_input=False)[:10]
    ]
    return f"{exc.error_count()} validation error(s): " + "; ".join(parts)


def _parse(record: InboundRecord) -> InboundEvent:
    value = record.value
    if not value:
        raise _Invalid("empty", "record has no value")
    if len(value) > MAX_INBOUND_BYTES:
        raise _Invalid("oversized", f"value is {len(value)} bytes, limit {MAX_INBOUND_BYTES}")
    try:
        event = InboundEvent.model_validate_json(value)
    except ValidationError as exc:
        raise _Invalid("validation_failed", _validation_detail(exc)) from None
    if record.key is not None and record.key != event.tenant_id.encode():
        raise _Invalid("key_mismatch", "the record key is not the event's tenant id")
    return event


class InboundService:
    """Turns inbound records into plans (see the module docstring)."""

    def __init__(
        self,
        *,
        topics: TopicMap,
        directory: Directory,
        links: PartnerLinks,
        connections: Connections,
        marks: Marks,
        reviews: Reviews,
        readers: Readers | None = None,
    ) -> None:
        self._topics = topics
        self._directory = directory
        self._links = links
        self._connections = connections
        self._marks = marks
        self._reviews = reviews
        self._readers = readers

    async def handle(self, record: InboundRecord) -> Plan:
        """The plan for ``record``; raises only :data:`RETRIED_ERRORS`."""
        try:
            event = _parse(record)
        except _Invalid as invalid:
            return self._dead_letter(record, invalid.reason, invalid.detail)
        try:
            return await self._plan(event)
        except RETRIED_ERRORS:
            raise
        except Exception as exc:  # a bug must not stop the partition: dead-letter the record
            logger.error(  # never the traceback: an exception's message may quote the input
                "inbound.record.internal_error",
                extra={"tenant_id": event.tenant_id, "error": type(exc).__name__},
            )
            return self._dead_letter(
                record, "internal_error", f"resolution raised {type(exc).__name__}"
            )

    async def _connection(self, event: InboundEvent) -> ConnectionRecord | None:
        try:
            connector = Connector(event.connector)
        except ValueError:
            return None
        connection = await self._connections.get(event.tenant_id, connector)
        if connection is None or connection.connection_id != event.connection_id:
            logger.info(
                "inbound.connection.not_found",
                extra={"tenant_id": event.tenant_id, "connector": event.connector},
            )
            return None
        return connection

    @staticmethod
    def _policy(event: InboundEvent, connection: ConnectionRecord | None) -> MatchPolicy:
        if connection is None:
            return MatchPolicy()
        try:
            return MatchPolicy.model_validate(connection.settings.get("match_policy") or {})
        except ValidationError:
            logger.warning(
                "inbound.match_policy.invalid",
                extra={"tenant_id": event.tenant_id, "connector": event.connector},
            )
            return MatchPolicy()

    async def _reader(
        self, event: InboundEvent, connection: ConnectionRecord | None
    ) -> PartnerCompanyReader | None:
        company = event.company
        needs_read = company.partner_object_id is not None and not (
            company.domain or company.name or company.linkedin_url
        )
        if not needs_read or connection is None or self._readers is None:
            return None
        return await self._readers.reader(connection)

    async def _plan(self, event: InboundEvent) -> Plan:
        tenant_id = event.tenant_id
        bookmark_id = bookmark_id_for(event.inbound_id)
        review_id = review_id_for(event.inbound_id)
        if await self._marks.produced(tenant_id, bookmark_id):
            return Plan()
        if await self._reviews.get(tenant_id, review_id) is not None:
            return Plan()
        connection = await self._connection(event)
        resolution = await resolve(
            event,
            directory=self._directory,
            links=self._links,
            policy=self._policy(event, connection),
            reader=await self._reader(event, connection),
        )
        key = tenant_id.encode()
        headers: Headers = (("qi.correlation_id", event.correlation_id.encode()),)
        if resolution.company_id is not None and resolution.match is not None:
            bookmark = Bookmark.of(event, resolution.company_id, resolution.match)

            async def mark() -> None:
                await self._marks.mark(tenant_id, bookmark_id)

            return Plan(
                (
                    Output(
                        self._topics.bookmarks, key, bookmark.model_dump_json().encode(), headers
                    ),
                ),
                mark,
                f"bookmark.{resolution.match.strategy}",
            )
        review = InboundReview(
            review_id=review_id,
            tenant_id=tenant_id,
            reason=resolution.reason or "no_candidate",
            explanation=resolution.explanation,
            candidates=list(resolution.candidates),
            event=event,
            created_at=event.received_at,
        )

        async def store() -> None:
            await self._reviews.add(review)

        return Plan(
            (Output(self._topics.match_review, key, review.model_dump_json().encode(), headers),),
            store,
            f"review.{review.reason}",
        )

    def _dead_letter(self, record: InboundRecord, reason: str, detail: str) -> Plan:
        key, value = record.key, record.value or b""
        key_bytes, value_bytes = len(key or b""), len(value)
        headers: list[tuple[str, bytes]] = [
            ("qi.error.reason", reason.encode()),
            ("qi.error.detail", detail[:_MAX_DETAIL].encode()),
            ("qi.original.topic", record.topic.encode()),
            ("qi.original.partition", str(record.partition).encode()),
            ("qi.original.offset", str(record.offset).encode()),
            ("qi.original.key_bytes", str(key_bytes).encode()),
            ("qi.original.value_bytes", str(value_bytes).encode()),
        ]
        if key_bytes + value_bytes > MAX_DEAD_LETTER_PAYLOAD_BYTES:
            headers.append(("qi.payload_omitted", b"too_large"))
            key, value = None, b""
        logger.warning(
            "inbound.record.dead_lettered",
            extra={
                "reason": reason,
                "original_partition": record.partition,
                "original_offset": record.offset,
            },
        )
        return Plan(
            (Output(self._topics.invalid_events, key, value, tuple(headers)),),
            outcome=f"dead_letter.{reason}",
        )
