"""The inbound agents: highlights to bookmarks or reviews, and the company directory.

``inbound`` consumes ``integrations.inbound`` (keyed by tenant, so one tenant's highlights are
handled in order by one worker). For each record, in order, it asks
:class:`~processors.inbound.service.InboundService` for a plan, produces the plan's records,
waits until the broker acknowledged every one, then carries out the plan's Redis write (the
bookmark mark or the stored review) and only then acknowledges the record. Records are handled
one after the other, not in parallel: a redelivered highlight right behind its first copy
must find the first copy's mark. Inbound volume is that of partner webhooks, far below the
domain events.

A highlight that carries only a partner object id (a CRM's event often does) is matched by the
partner's company, read with the connection's token by
:class:`~processors.inbound.readers.ConnectionReaders` (one per agent, its readers kept per
connection; OAuth connections renew through the grant store the delivery sinks use, and
connections parked as ``needs_reauth`` are not read). A read retries transient failures a
bounded number of times and then gives a review (``partner_read_failed``), so a partner that
keeps answering 429 delays its tenant's partition by at most the reader's bound per
highlight, never indefinitely.

``inbound-directory`` consumes ``queast.domain-events`` and keeps the per-tenant company
directory (:mod:`processors.inbound.directory`, which says why it is a separate agent rather
than a hook in the routing agent).

Failures, as in :mod:`processors.agents.route`: a malformed record is dead-lettered by the
service and never stops the partition; Redis, Kafka and network errors
(:data:`RETRIED_ERRORS`) are retried with capped exponential backoff for as long as they last,
step by step (planning, producing what the broker has not acknowledged yet, the Redis write;
each is idempotent: the same ids, ``SET NX``/``HSETNX``);
anything else is a bug and crashes the agent (Faust restarts it). Each batch's messages are
referenced (``incref``) before handling and released (``ack``) only once every record of the
batch was carried out, so a crash commits nothing past what was done (see "Commits" in
:mod:`processors.agents.route`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import TypeVar

import faust
from faust.types import EventT

from processors.agents.streams import INFRASTRUCTURE_ERRORS as RETRIED_ERRORS
from processors.agents.streams import concrete_stream, hold_batches, raw_topic, retrying
from processors.connection_health import HealthStore
from processors.identity.repository import IdentityRepository
from processors.inbound.directory import CompanyDirectory, directory_update
from processors.inbound.readers import ConnectionReaders
from processors.inbound.reviews import BookmarkMarks, ReviewStore
from processors.inbound.service import InboundRecord, InboundService, Output
from processors.metrics import INBOUND_RESOLVED
from processors.oauthgrants import OAuthTokenStore
from processors.redis_client import redis_client
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["RETRIED_ERRORS", "InboundHandler", "handle_batches", "register_inbound_agents"]

logger = logging.getLogger(__name__)

_BATCH_SIZE = 100
_BATCH_WITHIN_SECONDS = 0.2

_T = TypeVar("_T")
SendOutput = Callable[[Output], Awaitable[Awaitable[object]]]


class InboundHandler:
    """Carries out one record's plan, retrying infrastructure errors until they pass."""

    def __init__(
        self,
        service: InboundService,
        send: SendOutput,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._service = service
        self._send = send
        self._sleep = sleep

    async def handle(self, record: InboundRecord) -> str:
        """Handle ``record`` to the end; the plan's outcome (for logs and tests).

        Each step is retried on its own: a failed Redis write after the acknowledgement does
        not produce the records again.
        """
        plan = await self._until_done(lambda: self._service.handle(record))
        pending = list(plan.outputs)

        async def produce() -> None:
            while pending:
                ack = await self._send(pending[0])
                await ack
                pending.pop(0)

        await self._until_done(produce)
        await self._until_done(plan.after_ack)
        INBOUND_RESOLVED.labels(outcome=plan.outcome).inc()
        logger.info(
            "inbound.record.done", extra={"outcome": plan.outcome, "partition": record.partition}
        )
        return plan.outcome

    async def _until_done(self, step: Callable[[], Awaitable[_T]]) -> _T:
        return await retrying(
            step, component="inbound", event="inbound.record.retrying", sleep=self._sleep
        )


async def handle_batches(
    batches: AsyncIterable[Sequence[EventT[bytes]]],
    handle: Callable[[InboundRecord], Awaitable[object]],
) -> None:
    """Handle each record of each batch in order; a batch is acknowledged once all are done."""

    async def each(records: list[InboundRecord]) -> None:
        for record in records:
            await handle(record)

    await hold_batches(batches, each)


async def _apply_directory(directory: CompanyDirectory, records: Sequence[InboundRecord]) -> None:
    """One batch's company events applied together (two Redis round trips, not two per
    event): this agent shares ``queast.domain-events`` with routing, and a slow reader of a
    shared topic holds the other back."""
    updates = [u for record in records if (u := directory_update(record.value)) is not None]
    if not updates:
        return
    await retrying(
        lambda: directory.apply_many(updates),
        component="inbound-directory",
        event="inbound.directory.retrying",
    )


def register_inbound_agents(app: faust.App, *, settings: Settings) -> None:
    """Register the ``inbound`` and ``inbound-directory`` agents on ``app``."""
    topics = TopicMap(settings.topics.prefix)
    prefix = settings.redis.key_prefix

    async def send(output: Output) -> Awaitable[object]:
        return await app.producer.send(
            output.topic, output.key, output.value, None, None, list(output.headers)
        )

    @app.agent(raw_topic(app, topics.inbound), name="inbound")
    async def inbound(stream: faust.StreamT[bytes]) -> None:
        redis = redis_client(settings.redis)
        box = settings.secrets.secret_box()
        readers = ConnectionReaders(
            box=box,
            base_urls=settings.partners.base_urls,
            tokens=OAuthTokenStore(redis, box=box, key_prefix=prefix),
            health=HealthStore(redis, key_prefix=prefix),
        )
        service = InboundService(
            topics=topics,
            directory=CompanyDirectory(redis, key_prefix=prefix),
            links=IdentityRepository(redis, key_prefix=prefix),
            connections=ConnectionRepository(redis, key_prefix=prefix),
            marks=BookmarkMarks(redis, key_prefix=prefix),
            reviews=ReviewStore(redis, key_prefix=prefix),
            readers=readers,
        )
        try:
            await handle_batches(
                concrete_stream(stream).take_events(_BATCH_SIZE, within=_BATCH_WITHIN_SECONDS),
                InboundHandler(service, send).handle,
            )
        finally:
            await readers.aclose()
            await redis.aclose()

    @app.agent(raw_topic(app, topics.domain_events), name="inbound-directory")
    async def directory(stream: faust.StreamT[bytes]) -> None:
        redis = redis_client(settings.redis)
        companies = CompanyDirectory(redis, key_prefix=prefix)

        async def apply(records: list[InboundRecord]) -> None:
            await _apply_directory(companies, records)

        try:
            await hold_batches(
                concrete_stream(stream).take_events(
                    settings.routing.batch_size, within=settings.routing.batch_within_seconds
                ),
                apply,
            )
        finally:
            await redis.aclose()
