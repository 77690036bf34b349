"""The routing agent: ``queast.domain-events`` to ``integrations.exports.<connector>``.

Takes batches (``take_events`` with ``within``), hands them to :class:`RoutingService`,
produces every record it returns and waits for the broker to acknowledge all of them before
the batch's events are acknowledged (and so become committable).

Failures, by kind:

- A bad record never reaches this module as an exception: the service dead-letters every
  record whose parsing, validation, mapping or encoding fails, whatever the exception.
- Infrastructure errors (:data:`INFRASTRUCTURE_ERRORS`: Redis, Kafka, ``OSError`` and so
  timeouts) are retried with capped exponential backoff, for as long as they last: the
  partition waits rather than skipping records. The connection lookup is retried as a whole;
  of the records to produce, only those the broker did not acknowledge are sent again.
- A record the producer refuses as too large (aiokafka's ``MessageSizeTooLargeError``, raised
  by the client's own size check and wrapped by Faust in ``ProducerSendError``, or the
  broker's ``MESSAGE_TOO_LARGE`` answer on the delivery future) is permanent for that record,
  never retried as it is. The broker refuses a whole producer batch for one large record, so
  each refused record is first sent again on its own; refused alone, it is replaced by what
  :meth:`RoutingService.refused_as_too_large` gives (a dead letter without payload), and a
  replacement refused in turn is logged (``routing.dead_letter.dropped``, with the original
  coordinates) and left out. The batch goes on.
- Anything else (a bug in this module) crashes the agent, and Faust restarts it.

Commits. Faust's ``Stream.take_events`` acknowledges every event of a batch in a ``finally``
when the consumer of the generator asks for the next batch or closes it, even when the agent
raised in between, and it does so whatever ``noack()`` says. So :func:`route_batches` takes its
own reference on each event's message (``Message.incref``) before routing the batch and drops
it (``event.ack()``) only once every record of the batch was acknowledged by the broker. A
message is committable only when its last reference is dropped: ``take_events``' own
acknowledgement alone never makes it so. If the agent crashes mid-batch, the batch's references
are never dropped; Faust commits a partition only up to its first unacknowledged offset, so
nothing from that offset on is committed by this process, and a restart or a rebalance consumes
the batch again (same idempotency keys and delivery ids).

Rebalances do not wait for a batch in flight (``stream_wait_empty`` is off, see
:mod:`processors.app`): the batch finishes and drops its references, but an acknowledgement of
a message read before its partition was revoked no longer counts
(:class:`processors.app.SafeCommitConsumer`). The partition's next owner routes those records
again; their exports carry the same idempotency keys and delivery ids, and delivery skips the
copies as duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.types import EventT

from processors.agents.streams import (
    FIRST_BACKOFF_SECONDS,
    INFRASTRUCTURE_ERRORS,
    MAX_BACKOFF_SECONDS,
    concrete_stream,
    hold_batches,
)
from processors.contracts import default_registry
from processors.metrics import ROUTING_BATCH_SECONDS
from processors.redis_client import redis_client
from processors.routing.service import IncomingRecord, OutgoingRecord, RoutingService
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = [
    "INFRASTRUCTURE_ERRORS",
    "BatchRouter",
    "SendRecord",
    "register_route_agent",
    "route_batches",
]

logger = logging.getLogger(__name__)


SendRecord = Callable[[OutgoingRecord], Awaitable[Awaitable[object]]]
"""Hands one record to the producer; the awaitable it returns completes when the broker
acknowledged it (Faust's ``Producer.send``)."""


def _too_large(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the record is too large to produce."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MessageSizeTooLargeError | RecordTooLargeError):
            return True
        seen = seen.__cause__
    return False


class BatchRouter:
    """Routes one batch and produces its records until the broker acknowledged each of them."""

    def __init__(
        self,
        service: RoutingService,
        send: SendRecord,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._service = service
        self._send = send
        self._sleep = sleep

    async def route(self, batch: Sequence[IncomingRecord]) -> None:
        """Route and produce ``batch``; returns once every record of it is acknowledged.

        Retries infrastructure errors until they pass; raises only what is neither an
        infrastructure error nor a too-large record (a bug).
        """
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            try:
                report = await self._service.route(batch)
                break
            except INFRASTRUCTURE_ERRORS as exc:
                backoff = await self._wait(exc, backoff, "route")
        await self._produce(report.records)
        logger.debug(
            "routing.batch.done",
            extra={"records": len(batch), "exports": report.exports, "invalid": report.invalid},
        )

    async def _produce(self, records: Sequence[OutgoingRecord]) -> None:
        pending = list(records)
        backoff = FIRST_BACKOFF_SECONDS
        replaced: set[tuple[str, int, int]] = set()
        while pending:
            failures = await self._send_all(pending)
            pending = []
            error: Exception | None = None
            for record, exc in failures:
                outcome = (
                    await self._send_alone_or_replace(record, replaced)
                    if _too_large(exc)
                    else (record, exc)
                )
                if outcome is not None:
                    pending.append(outcome[0])
                    error = outcome[1]
            if error is not None:
                backoff = await self._wait(error, backoff, "produce")

    async def _send_all(
        self, records: Sequence[OutgoingRecord]
    ) -> list[tuple[OutgoingRecord, Exception]]:
        """Send every record, wait for every acknowledgement; the records that failed."""
        failures: list[tuple[OutgoingRecord, Exception]] = []
        sent: list[tuple[OutgoingRecord, Awaitable[object]]] = []
        for record in records:
            try:
                sent.append((record, await self._send(record)))
            except INFRASTRUCTURE_ERRORS as exc:
                failures.append((record, exc))
        results = await asyncio.gather(*(ack for _, ack in sent), return_exceptions=True)
        for (record, _), result in zip(sent, results, strict=True):
            if isinstance(result, INFRASTRUCTURE_ERRORS):
                failures.append((record, result))
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _send_alone_or_replace(
        self, record: OutgoingRecord, replaced: set[tuple[str, int, int]]
    ) -> tuple[OutgoingRecord, Exception] | None:
        """Produce a refused record on its own, else its replacements, until one is taken.

        ``None`` once ``record`` is dealt with (produced, replaced or dropped); else the record
        to try again later (``record`` or its replacement) and the infrastructure error met.
        ``replaced`` holds the source coordinates already dead-lettered for a refused export,
        so that two refused exports of one event give one dead letter.
        """
        current = record
        while True:
            failures = await self._send_all([current])
            if not failures:
                return None
            _, exc = failures[0]
            if not _too_large(exc):
                return current, exc
            logger.warning(
                "routing.record.too_large",
                extra={
                    "topic": current.topic,
                    "key_bytes": len(current.key or b""),
                    "value_bytes": len(current.value),
                    "error": type(exc).__name__,
                },
            )
            replacement = self._service.refused_as_too_large(current)
            if replacement is None:
                source = current.source
                logger.error(
                    "routing.dead_letter.dropped",
                    extra={
                        "topic": current.topic,
                        "original_topic": None if source is None else source.topic,
                        "original_partition": None if source is None else source.partition,
                        "original_offset": None if source is None else source.offset,
                    },
                )
                return None
            source = replacement.source
            if replacement.topic != current.topic and source is not None:
                coordinates = (source.topic, source.partition, source.offset)
                if coordinates in replaced:
                    return None
                replaced.add(coordinates)
            current = replacement

    async def _wait(self, exc: Exception, backoff: float, step: str) -> float:
        logger.warning(
            "routing.batch.retrying",
            extra={"step": step, "error": type(exc).__name__, "backoff_s": backoff},
        )
        await self._sleep(backoff)
        return min(backoff * 2, MAX_BACKOFF_SECONDS)


async def route_batches(
    batches: AsyncIterable[Sequence[EventT[bytes]]],
    route: Callable[[Sequence[IncomingRecord]], Awaitable[None]],
) -> None:
    """Route every batch with ``route``; an event becomes committable only once it returned.

    See the module docstring ("Commits") for why the extra reference is taken.
    """

    async def timed(records: list[IncomingRecord]) -> None:
        with ROUTING_BATCH_SECONDS.time():
            await route(records)

    await hold_batches(batches, timed)


def register_route_agent(app: faust.App, *, source: faust.TopicT, settings: Settings) -> None:
    """Register the routing agent on ``app``, consuming ``source``."""
    topics = TopicMap(settings.topics.prefix)
    registry = default_registry()

    async def send(record: OutgoingRecord) -> Awaitable[object]:
        return await app.producer.send(
            record.topic, record.key, record.value, None, None, list(record.headers)
        )

    @app.agent(source, name="route")
    async def route(stream: faust.StreamT[bytes]) -> None:
        redis = redis_client(settings.redis)
        service = RoutingService(
            topics=topics,
            connections=ConnectionRepository(redis, key_prefix=settings.redis.key_prefix),
            registry=registry,
            settings=settings.routing,
        )
        try:
            await route_batches(
                concrete_stream(stream).take_events(
                    settings.routing.batch_size, within=settings.routing.batch_within_seconds
                ),
                BatchRouter(service, send).route,
            )
        finally:
            await redis.aclose()
