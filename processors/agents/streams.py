"""What the agents need from Faust: byte topics and the concrete stream class.

The app (:mod:`processors.app`) and the agents (:mod:`processors.agents.route`,
:mod:`processors.agents.deliver`) both declare their topics with :func:`raw_topic`; it lives
here, below both, so that the app imports the agents and nothing imports the app.

:func:`consumed` and :func:`hold_batches` are how the routing and inbound agents hand Faust's
events to their services (:class:`~processors.records.ConsumedRecord`) and commit them only
once handled (see "Commits" in :mod:`processors.agents.route`); both retry the same
infrastructure errors (:data:`INFRASTRUCTURE_ERRORS`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.types import EventT
from redis.exceptions import RedisError

from processors.metrics import BACKEND_RETRIES
from processors.records import ConsumedRecord

__all__ = [
    "FIRST_BACKOFF_SECONDS",
    "INFRASTRUCTURE_ERRORS",
    "MAX_BACKOFF_SECONDS",
    "concrete_stream",
    "consumed",
    "hold_batches",
    "raw_topic",
    "retrying",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    OSError,
    KafkaError,
    faust.exceptions.ProducerSendError,
)
"""Errors of Redis, the broker or the network: an agent waits and tries again, with a backoff
from :data:`FIRST_BACKOFF_SECONDS` doubling up to :data:`MAX_BACKOFF_SECONDS`."""
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


def concrete_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    """The stream Faust hands an agent, as its concrete class (``take_events``, ``noack``).

    Raises ``TypeError`` if Faust ever hands over something else.
    """
    if not isinstance(stream, faust.Stream):
        msg = f"expected a faust.Stream, got {type(stream).__name__}"
        raise TypeError(msg)
    return stream


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic whose keys and values stay bytes: decoding is the agents' business."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )


def consumed(event: EventT[bytes]) -> ConsumedRecord:
    """The record ``event`` carries, with its coordinates (key and value as bytes)."""
    message = event.message
    key, value = message.key, message.value
    return ConsumedRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key if isinstance(key, bytes) or key is None else bytes(key),
        value=value if isinstance(value, bytes) or value is None else bytes(value),
    )


async def hold_batches(
    batches: AsyncIterable[Sequence[EventT[bytes]]],
    handle: Callable[[list[ConsumedRecord]], Awaitable[object]],
) -> None:
    """Hand each batch's records to ``handle``; its events become committable only once it
    returned.

    Each event's message is referenced (``incref``) before ``handle`` runs and acknowledged
    after, so an exception in between commits nothing of the batch (see "Commits" in
    :mod:`processors.agents.route` for why the extra reference is taken).
    """
    async for events in batches:
        for event in events:
            event.message.incref()
        await handle([consumed(event) for event in events])
        for event in events:
            event.ack()


async def retrying(
    step: Callable[[], Awaitable[_T]],
    *,
    component: str,
    event: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> _T:
    """``step``'s result, retrying :data:`INFRASTRUCTURE_ERRORS` with capped exponential
    backoff for as long as they last (counted in ``qi_backend_retries_total`` as
    ``component``, logged as ``event``); any other error is raised."""
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        try:
            return await step()
        except INFRASTRUCTURE_ERRORS as exc:
            BACKEND_RETRIES.labels(component=component, error=type(exc).__name__).inc()
            logger.warning(event, extra={"error": type(exc).__name__, "backoff_s": backoff})
            await sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
