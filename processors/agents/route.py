"""The routing agent: ``queast.domain-events`` to ``integrations.exports.<connector>``.

Takes batches (``take_events`` with ``within``), hands them to :class:`RoutingService`,
produces every record it returns and waits for the broker to acknowledge all of them before
the batch's events are acknowledged (and so become committable). If Redis or Kafka fail, the
batch is tried again with capped exponential backoff: the partition waits rather than skipping
records or crashing the agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
from faust.types import EventT
from redis.exceptions import RedisError

from processors.agents.streams import concrete_stream
from processors.contracts import default_registry
from processors.metrics import ROUTING_BATCH_SECONDS
from processors.redis_client import redis_client
from processors.routing.service import IncomingRecord, RoutingService
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["register_route_agent"]

logger = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 30.0


def _incoming(event: EventT[bytes]) -> IncomingRecord:
    message = event.message
    key = message.key
    value = message.value
    return IncomingRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key if isinstance(key, bytes) or key is None else bytes(key),
        value=value if isinstance(value, bytes) or value is None else bytes(value),
    )


async def _route_and_produce(
    app: faust.App, service: RoutingService, batch: Sequence[IncomingRecord]
) -> None:
    with ROUTING_BATCH_SECONDS.time():
        report = await service.route(batch)
        pending = [
            await app.producer.send(
                record.topic, record.key, record.value, None, None, list(record.headers)
            )
            for record in report.records
        ]
        await asyncio.gather(*pending)
    logger.debug(
        "routing.batch.done",
        extra={"records": len(batch), "exports": report.exports, "invalid": report.invalid},
    )


def register_route_agent(app: faust.App, *, source: faust.TopicT, settings: Settings) -> None:
    """Register the routing agent on ``app``, consuming ``source``."""
    topics = TopicMap(settings.topics.prefix)
    registry = default_registry()

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
            async for events in concrete_stream(stream).take_events(
                settings.routing.batch_size, within=settings.routing.batch_within_seconds
            ):
                batch = [_incoming(event) for event in events]
                backoff = 0.5
                while True:
                    try:
                        await _route_and_produce(app, service, batch)
                        break
                    except (RedisError, OSError, faust.exceptions.ProducerSendError) as exc:
                        logger.warning(
                            "routing.batch.retrying",
                            extra={"error": type(exc).__name__, "backoff_s": backoff},
                        )
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
        finally:
            await redis.aclose()
