"""The delivery and retry agents of one connector, sharing one :class:`DeliveryEngine`.

- ``deliver-<connector>`` consumes ``integrations.exports.<connector>`` with manual acks and
  hands every record to the engine; the engine acknowledges it once its outcome is written.
- ``retry-<connector>`` consumes ``integrations.retry.<connector>`` into a delay queue ordered by
  ``not_before`` (bounded by ``QI_DELIVERY_RETRY_BUFFER_MAX``: when full, the agent stops reading
  until records fall due) and hands records to the engine when they are due. Records are held in
  memory, not on a blocked partition, so a long backoff of one tenant never holds up another's
  retries; their offsets stay uncommitted until they are handled, so a crash re-reads them.

A record without a usable envelope (it cannot come from the router) is dead-lettered at once.

Neither agent dies of a Redis or Kafka error, and the retry agent's release task never stops
silently: handing a record to the engine and dead-lettering an unusable one are tried again
with capped exponential backoff (:func:`until_written`) until they succeed, and the record is
acknowledged only after that, so the partition waits instead of skipping a record or leaving
it unacknowledged behind a crashed agent. Every failed try is logged (``delivery.agent.retrying``;
an error that is neither Redis's nor Kafka's nor the network's is logged with its traceback,
``delivery.agent.failed``) and counted in ``qi_backend_retries_total{component}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import faust
from faust.exceptions import ProducerSendError
from faust.types import EventT
from redis.exceptions import RedisError

from connectors.registry import get_connector
from processors import metrics
from processors.agents.streams import concrete_stream
from processors.contracts import default_registry
from processors.deliveries.engine import Ack, DeliveryEngine
from processors.deliveries.envelope import DeliveryItem, EnvelopeError, item_from_record
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.deliveries.state import DeliveryStateRepository
from processors.deliveries.throttle import GlobalThrottle
from processors.deliveries.tokens import OAuthTokenStore
from processors.identity.repository import IdentityRepository
from processors.kafka import header_value
from processors.redis_client import redis_client
from processors.routing.service import OutgoingRecord
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["register_delivery_agents", "release_due", "until_written"]

logger = logging.getLogger(__name__)

_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 30.0
_INFRASTRUCTURE_ERRORS = (RedisError, OSError, ProducerSendError)


async def until_written(
    operation: Callable[[], Awaitable[object]],
    *,
    connector: str,
    component: str,
    first_backoff: float = _FIRST_BACKOFF_SECONDS,
    max_backoff: float = _MAX_BACKOFF_SECONDS,
) -> None:
    """Run ``operation`` until it returns, sleeping with capped exponential backoff between
    failed tries. Only cancellation gets through: an agent must outlive any one failure."""
    backoff = first_backoff
    while True:
        try:
            await operation()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.BACKEND_RETRIES.labels(component, type(exc).__name__).inc()
            extra = {
                "connector": connector,
                "component": component,
                "error": type(exc).__name__,
                "backoff_s": backoff,
            }
            if isinstance(exc, _INFRASTRUCTURE_ERRORS):
                logger.warning("delivery.agent.retrying", extra=extra)
            else:
                logger.exception("delivery.agent.failed", extra=extra)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


def _headers(event: EventT[bytes]) -> dict[str, str]:
    raw = event.message.headers
    names = list(raw.keys()) if isinstance(raw, Mapping) else [name for name, _ in raw or []]
    return {name: header_value(raw, name) or "" for name in names}


def _item(event: EventT[bytes]) -> DeliveryItem:
    message = event.message
    value = message.value
    return item_from_record(
        value=value if isinstance(value, bytes) or value is None else bytes(value),
        headers=_headers(event),
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )


class _EngineHolder:
    """Builds the engine once, inside the worker's event loop, for both agents."""

    def __init__(self, app: faust.App, connector: str, settings: Settings) -> None:
        self._app = app
        self._connector = connector
        self._settings = settings
        self._engine: DeliveryEngine | None = None
        self._lock = asyncio.Lock()
        self.topics = TopicMap(settings.topics.prefix)

    async def produce(self, records: Sequence[OutgoingRecord]) -> None:
        pending = [
            await self._app.producer.send(r.topic, r.key, r.value, None, None, list(r.headers))
            for r in records
        ]
        await asyncio.gather(*pending)

    async def engine(self) -> DeliveryEngine:
        async with self._lock:
            if self._engine is None:
                self._engine = self._build()
            return self._engine

    def _build(self) -> DeliveryEngine:
        s = self._settings
        delivery = s.delivery
        redis = redis_client(s.redis)
        prefix = s.redis.key_prefix
        return DeliveryEngine(
            connector=self._connector,
            max_batch_size=get_connector(self._connector).max_batch_size,
            topics=self.topics,
            settings=delivery,
            state=DeliveryStateRepository(
                redis,
                key_prefix=prefix,
                dedupe_ttl_seconds=delivery.dedupe_ttl_seconds,
                hop_ttl_seconds=int(delivery.retry_timeout_seconds) + 86400,
            ),
            connections=ConnectionRepository(redis, key_prefix=prefix, detect_config_loss=True),
            records=DeliveryRecordIndex(
                redis, key_prefix=prefix, retention_seconds=delivery.records_retention_seconds
            ),
            produce=self.produce,
            sink_factory=ConnectorSinkFactory(
                self._connector,
                box=s.secrets.secret_box(),
                allow_private_networks=s.webhook.allow_private_networks,
                identity=IdentityRepository(redis, key_prefix=prefix),
                base_url={
                    "hubspot": s.partners.hubspot_base_url,
                    "pipedrive": s.partners.pipedrive_base_url,
                }.get(self._connector),
                tokens=OAuthTokenStore(redis, box=s.secrets.secret_box(), key_prefix=prefix),
            ),
            throttle=GlobalThrottle(
                redis,
                key=f"{prefix}throttle:{self._connector}",
                rate_per_second=delivery.global_rate_per_second,
            ),
            policy=RetryPolicy(
                max_attempts=delivery.retry_max_attempts,
                timeout_seconds=delivery.retry_timeout_seconds,
                base_delay_seconds=delivery.retry_base_delay_seconds,
                max_delay_seconds=delivery.retry_max_delay_seconds,
            ),
            registry=default_registry(),
        )

    async def dead_letter_unusable(self, event: EventT[bytes], error: EnvelopeError) -> None:
        message = event.message
        value = message.value if isinstance(message.value, bytes) else b""
        headers = [
            ("qi.error.class", b"EnvelopeError"),
            ("qi.error.reason", str(error).encode()),
            ("qi.original.topic", message.topic.encode()),
            ("qi.original.partition", str(message.partition).encode()),
            ("qi.original.offset", str(message.offset).encode()),
        ]
        key = message.key if isinstance(message.key, bytes) else None
        record = OutgoingRecord(self.topics.dlq(self._connector), key, value, tuple(headers))
        await self.produce([record])
        logger.error(
            "delivery.envelope.invalid",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "reason": str(error),
            },
        )


class _DelayQueue:
    """Retry records by due time; ``put`` waits while the buffer is full."""

    def __init__(self, capacity: int) -> None:
        self._heap: list[tuple[float, int, DeliveryItem, Ack]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._space = asyncio.Semaphore(capacity)

    async def put(self, due: float, item: DeliveryItem, ack: Ack) -> None:
        await self._space.acquire()
        heapq.heappush(self._heap, (due, next(self._order), item, ack))
        self._changed.set()

    async def due(self) -> tuple[DeliveryItem, Ack]:
        while True:
            if self._heap:
                wait = self._heap[0][0] - time.time()
                if wait <= 0:
                    _due, _n, item, ack = heapq.heappop(self._heap)
                    self._space.release()
                    return item, ack
            else:
                wait = None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)


async def release_due(
    due: Callable[[], Awaitable[tuple[DeliveryItem, Ack]]],
    submit: Callable[[DeliveryItem, Ack], Awaitable[None]],
    *,
    connector: str,
    first_backoff: float = _FIRST_BACKOFF_SECONDS,
) -> None:
    """The retry agent's release task: hand each record to the engine when it falls due.

    Runs until cancelled; a failed hand-over is tried again (:func:`until_written`) with the
    same record, so no due record is dropped and the task never ends on an error.
    """
    while True:
        item, ack = await due()
        await until_written(
            functools.partial(submit, item, ack),
            connector=connector,
            component="retry.release",
            first_backoff=first_backoff,
        )


def _release_stopped(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "delivery.retry.release_stopped",
            extra={"task": task.get_name(), "error": type(task.exception()).__name__},
        )


def register_delivery_agents(app: faust.App, *, connector: str, settings: Settings) -> None:
    """Register ``deliver-<connector>`` and ``retry-<connector>`` on ``app``."""
    from processors.app import raw_topic  # noqa: PLC0415  (app imports this module)

    holder = _EngineHolder(app, connector, settings)
    exports = raw_topic(app, holder.topics.exports(connector))
    retries = raw_topic(app, holder.topics.retry(connector))
    delays = _DelayQueue(settings.delivery.retry_buffer_max)

    @app.agent(exports, name=f"deliver-{connector}")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        engine = await holder.engine()
        async for event in concrete_stream(stream).noack().events():
            try:
                item = _item(event)
            except EnvelopeError as exc:
                await until_written(
                    functools.partial(holder.dead_letter_unusable, event, exc),
                    connector=connector,
                    component="deliver.dead_letter",
                )
                event.ack()
                continue
            await until_written(
                functools.partial(engine.submit, item, event.ack),
                connector=connector,
                component="deliver.submit",
            )

    @app.agent(retries, name=f"retry-{connector}")
    async def retry(stream: faust.StreamT[bytes]) -> None:
        engine = await holder.engine()

        releaser = asyncio.create_task(
            release_due(delays.due, engine.submit, connector=connector),
            name=f"retry-release-{connector}",
        )
        releaser.add_done_callback(_release_stopped)
        try:
            async for event in concrete_stream(stream).noack().events():
                try:
                    item = _item(event)
                except EnvelopeError as exc:
                    await until_written(
                        functools.partial(holder.dead_letter_unusable, event, exc),
                        connector=connector,
                        component="retry.dead_letter",
                    )
                    event.ack()
                    continue
                await delays.put(item.not_before_ms / 1000, item, event.ack)
        finally:
            releaser.cancel()
