"""The delivery and retry agents of one connector, sharing one :class:`DeliveryEngine`.

- ``deliver-<connector>`` consumes ``integrations.exports.<connector>`` with manual acks and
  hands every record to the engine; the engine acknowledges it once its outcome is written.
- ``retry-<connector>`` consumes ``integrations.retry.<connector>`` into a delay queue ordered by
  ``not_before`` and hands records to the engine when they are due. Records are held in
  memory, not on a blocked partition, so a long backoff of one tenant never holds up another's
  retries; their offsets stay uncommitted while they are held, so a crash re-reads them.

How long a record is held (``QI_DELIVERY_RETRY_HOLD_SECONDS``, default five minutes): a
record due within the hold is held until it is due; a record due later is held for the hold
and then *re-queued*: written back to the retry topic unchanged (same ``not_before``, attempt
count and history) as its next hop, and acknowledged (:meth:`DeliveryEngine.requeue`). So no
held record keeps the retry topic's committed offset back for more than about the hold, and
a restart re-reads at most that much; the hop number makes the engine drop the old copy if a
crash comes between the write and the commit. The price is one write per waiting record per
hold: a record deferred an hour is written about twelve times.

The buffer (``QI_DELIVERY_RETRY_BUFFER_MAX`` records) is shared by every tenant of the
connector, and far-future records of one tenant (a partner asking for hours, a spent quota)
must not keep the others' retries out of it. When it is full:

- a record due within the hold takes the place of the held record due last, if that one is
  not due within the hold: the far record is re-queued at once (written back as its next hop
  and acknowledged) and the near one is held;
- a record due later than the hold is not held: it is re-queued at once, so reading goes on
  to the records behind it. So that a partition holding nothing but far records does not spin
  (each re-queued record is read again straight away), a record read less than
  ``_MIN_LAP_SECONDS`` after it was written waits until it is that old first: such a tail is
  gone round at most once every few seconds, one write per record and lap;
- otherwise (the buffer is full of records due within the hold) reading waits until one is
  due: genuine back-pressure, at most one hold long.

A ``not_before`` further away than the retry budget (a hand-made record) is held as if due at
the end of the budget; the engine dead-letters it if its age budget is spent by then.

A record without a usable envelope (it cannot come from the router) is dead-lettered at once.

Rebalances. Faust's wait for every record its agents took to be acknowledged before it gives
partitions up (``stream_wait_empty``) is off (:func:`processors.app.create_app`): these agents
hold records unacknowledged for as long as a partner is slow or paused (lanes) and up to the
hold (retry buffer), and one worker would hold up the whole group's rebalance past the
broker's rebalance timeout, be evicted, and go on sending records the new owner reads again.
Instead, on Faust's ``on_partitions_revoked`` signal (sent in every rebalance, after the
consumer stopped reading and cleared the stream buffers, before the partitions are given up),
every record of a revoked partition that has not started sending is dropped, without being
acknowledged, from the engine's lane queues (:meth:`DeliveryEngine.drop_partitions`) and from
the retry buffer; the log ``delivery.partitions.revoked`` and
``qi_revoked_dropped_total{connector,held_in}`` count them. The partition's next owner reads
them again from the committed offset, which they held back; it may be this worker again (the
aiokafka consumer revokes every partition in a rebalance and assigns them afresh), and so no
record is kept across a rebalance. What has started goes on: a batch a lane task took
(claimed, waiting for room, at the partner) finishes and writes its outcome; its claims keep
the new owner from sending the same entity meanwhile, and its acknowledgements are ignored
(:class:`processors.app.SafeCommitConsumer` ignores acknowledgements of messages read before
their partition was revoked). So are a record the retry buffer was re-queueing or handing to
the engine at that moment, and a record an agent was handing to the engine or the buffer: they
reach a lane or the buffer after the drop and are dealt with as usual, the claims deciding
whether they are still to be sent. Records acknowledged within the last commit interval were
not committed (Faust discards revoked partitions' pending acknowledgements) and are read
again too; dedupe skips them.

Shutdown (``SIGTERM``) does not wait either: the consumer stops reading and commits what was
acknowledged, never past a record still held (:class:`processors.app.SafeCommitConsumer`);
held and in-flight records are read again at the next start.

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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import faust
from faust.exceptions import ProducerSendError
from faust.types import TP, EventT
from mode.types.signals import BaseSignalT
from redis.exceptions import RedisError

from connectors.registry import get_connector
from processors import metrics
from processors.agents.streams import concrete_stream, raw_topic
from processors.contracts import default_registry
from processors.deliveries.engine import DeliveryEngine
from processors.deliveries.envelope import DeliveryItem, EnvelopeError, item_from_record
from processors.deliveries.outputs import Ack
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.deliveries.state import DeliveryStateRepository
from processors.deliveries.throttle import GlobalThrottle
from processors.identity.held import HeldStore
from processors.identity.repository import IdentityRepository
from processors.kafka import header_value
from processors.oauthgrants import OAuthTokenStore
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


def _written_at(event: EventT[bytes]) -> float | None:
    """When the record was written (Kafka's timestamp, seconds), if the broker gave one."""
    timestamp = event.message.timestamp
    return float(timestamp) if timestamp and timestamp > 0 else None


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

    async def requeue(self, held: Sequence[tuple[DeliveryItem, Ack]]) -> None:
        """See :meth:`DeliveryEngine.requeue`."""
        engine = await self.engine()
        await engine.requeue(held)

    def drop_partitions(self, revoked: Collection[tuple[str, int]]) -> int:
        """See :meth:`DeliveryEngine.drop_partitions`; nothing to drop before it is built."""
        return 0 if self._engine is None else self._engine.drop_partitions(revoked)

    async def engine(self) -> DeliveryEngine:
        async with self._lock:
            if self._engine is None:
                self._engine = self._build()
                self._engine.start_held_sweeper()
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
                base_url=s.partners.base_url(self._connector),
                tokens=OAuthTokenStore(redis, box=s.secrets.secret_box(), key_prefix=prefix),
            ),
            held=HeldStore(redis, key_prefix=prefix),
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


Requeue = Callable[[Sequence[tuple[DeliveryItem, Ack]]], Awaitable[None]]

_REQUEUE_RETRY_SECONDS = 1.0
_REQUEUE_BATCH = 500
_MIN_LAP_SECONDS = 5.0


class _DelayQueue:
    """Retry records by due time, each held at most ``hold_seconds`` (see the module docstring).

    ``put`` waits while ``capacity`` records are held. ``due`` returns the next record that is
    due; a record whose hold ends first is handed to ``requeue`` (written back to the retry
    topic and acknowledged, up to 500 in one go) and leaves the buffer. A failed requeue
    (Redis or Kafka down) is tried again a second later; the records stay held meanwhile.
    """

    def __init__(
        self,
        capacity: int,
        *,
        hold_seconds: float,
        max_wait_seconds: float,
        requeue: Requeue,
        min_lap_seconds: float = _MIN_LAP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._min_lap = min_lap_seconds
        self._heap: list[tuple[float, int, float, DeliveryItem, Ack]] = []
        self._far: list[tuple[float, int]] = []
        """Held records due after their hold ends, as ``(-due, order)``: who makes room."""
        self._live: set[int] = set()
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._space = asyncio.Semaphore(capacity)
        self._hold = hold_seconds
        self._max_wait = max_wait_seconds
        self._requeue = requeue
        self._clock = clock

    def __len__(self) -> int:
        return len(self._heap)

    async def put(self, item: DeliveryItem, ack: Ack, *, written_at: float | None = None) -> None:
        """Hold ``item`` until it is due or its hold ends, whichever comes first.

        ``written_at`` is when the retry record was written (its Kafka timestamp); when the
        buffer is full, it bounds how often a far record goes round (module docstring).
        """
        now = self._clock()
        # not_before is the envelope's integer, which may be anything: compare as integers
        due_ms = max(0, min(item.not_before_ms, int((now + self._max_wait) * 1000)))
        due = due_ms / 1000
        if self._space.locked():
            if due > now + self._hold:
                await self._pass_on(item, ack, written_at=written_at)
                return
            await self._make_room(now)
        await self._space.acquire()
        self._push(min(due, self._clock() + self._hold), due, item, ack)

    async def _pass_on(self, item: DeliveryItem, ack: Ack, *, written_at: float | None) -> None:
        """The buffer is full and ``item`` is not due soon: re-queue it instead of holding it."""
        age = self._clock() - (written_at if written_at is not None else self._clock())
        if age < self._min_lap:
            await asyncio.sleep(self._min_lap - age)
        while True:
            try:
                await self._requeue([(item, ack)])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or Kafka: the record stays unacknowledged
                logger.warning(
                    "delivery.retry.requeue_failed",
                    extra={"records": 1, "error": type(exc).__name__},
                )
                await asyncio.sleep(_REQUEUE_RETRY_SECONDS)
                continue
            return

    async def _make_room(self, now: float) -> None:
        """Re-queue the held record due last, if it is not due within its hold."""
        while self._far:
            neg_due, order = self._far[0]
            if order not in self._live:
                heapq.heappop(self._far)  # already released or re-queued
                continue
            if -neg_due <= now + self._hold:
                return
            index = next((i for i, entry in enumerate(self._heap) if entry[1] == order), -1)
            if index < 0:  # not held any more (defensive: ``_live`` follows the heap)
                self._live.discard(order)
                continue
            _wake, _n, due, item, ack = self._heap[index]
            self._heap[index] = self._heap[-1]
            self._heap.pop()
            heapq.heapify(self._heap)
            heapq.heappop(self._far)
            self._live.discard(order)
            try:
                await self._requeue([(item, ack)])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep it held; the caller waits for room instead
                logger.warning(
                    "delivery.retry.requeue_failed",
                    extra={"records": 1, "error": type(exc).__name__},
                )
                self._push(self._clock() + _REQUEUE_RETRY_SECONDS, due, item, ack)
                return
            self._space.release()
            return

    def drop_partitions(self, revoked: Collection[tuple[str, int]]) -> int:
        """Drop every held record read from a partition in ``revoked``, without acknowledging.

        See the module docstring (rebalances). A record being re-queued or handed to the
        engine at this moment is no longer held and goes on. Returns how many were dropped.
        """
        gone = set(revoked)
        kept = [e for e in self._heap if (e[3].source_topic, e[3].source_partition) not in gone]
        dropped = len(self._heap) - len(kept)
        if dropped:
            heapq.heapify(kept)
            self._heap = kept
            self._live = {entry[1] for entry in kept}  # ``_far`` skips the others later
            for _ in range(dropped):
                self._space.release()
            self._changed.set()
        return dropped

    def _push(self, wake: float, due: float, item: DeliveryItem, ack: Ack) -> None:
        order = next(self._order)
        heapq.heappush(self._heap, (wake, order, due, item, ack))
        self._live.add(order)
        if due > wake:
            heapq.heappush(self._far, (-due, order))
            if len(self._far) > 2 * len(self._heap) + 64:  # drop entries of records gone
                self._far = [entry for entry in self._far if entry[1] in self._live]
                heapq.heapify(self._far)
        self._changed.set()

    async def due(self) -> tuple[DeliveryItem, Ack]:
        """The next record that is due (waiting for it); re-queues expired holds meanwhile."""
        while True:
            wait: float | None = None
            if self._heap:
                now = self._clock()
                wait = self._heap[0][0] - now
                if wait <= 0:
                    _wake, order, due, item, ack = heapq.heappop(self._heap)
                    self._live.discard(order)
                    if due <= now:
                        self._space.release()
                        return item, ack
                    expired = [(due, item, ack)]
                    while (
                        self._heap
                        and len(expired) < _REQUEUE_BATCH
                        and self._heap[0][0] <= now
                        and self._heap[0][2] > now
                    ):
                        _wake, order, due, item, ack = heapq.heappop(self._heap)
                        self._live.discard(order)
                        expired.append((due, item, ack))
                    await self._requeue_or_keep(expired)
                    continue
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    async def _requeue_or_keep(self, expired: list[tuple[float, DeliveryItem, Ack]]) -> None:
        try:
            await self._requeue([(item, ack) for _due, item, ack in expired])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or Kafka: keep the records, try again shortly
            logger.warning(
                "delivery.retry.requeue_failed",
                extra={"records": len(expired), "error": type(exc).__name__},
            )
            again = self._clock() + _REQUEUE_RETRY_SECONDS
            for due, item, ack in expired:
                self._push(again, due, item, ack)
            return
        for _ in expired:
            self._space.release()


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
    holder = _EngineHolder(app, connector, settings)
    exports = raw_topic(app, holder.topics.exports(connector))
    retries = raw_topic(app, holder.topics.retry(connector))
    delays = _DelayQueue(
        settings.delivery.retry_buffer_max,
        hold_seconds=settings.delivery.retry_hold_seconds,
        max_wait_seconds=settings.delivery.retry_timeout_seconds,
        requeue=holder.requeue,
    )

    async def on_revoked(
        _app: object, /, *args: object, signal: BaseSignalT[Any], **_kwargs: object
    ) -> None:
        """Faust's ``on_partitions_revoked`` signal: ``args`` is the set of revoked TPs."""
        revoked = args[0] if args and isinstance(args[0], AbstractSet) else set()
        owned = {(tp.topic, tp.partition) for tp in revoked if isinstance(tp, TP)}
        lanes = holder.drop_partitions(owned)
        held = delays.drop_partitions(owned)
        metrics.REVOKED_DROPPED.labels(connector, "lane").inc(lanes)
        metrics.REVOKED_DROPPED.labels(connector, "retry_buffer").inc(held)
        logger.info(
            "delivery.partitions.revoked",
            extra={
                "connector": connector,
                "partitions": len(owned),
                "dropped_lane": lanes,
                "dropped_retry_buffer": held,
            },
        )

    app.on_partitions_revoked.connect(on_revoked)

    async def usable_item(event: EventT[bytes], agent: str) -> DeliveryItem | None:
        """The event's delivery item, or None once an unusable event is dead-lettered and
        acknowledged (``{agent}.dead_letter`` retries the write until it is written)."""
        try:
            return _item(event)
        except EnvelopeError as exc:
            await until_written(
                functools.partial(holder.dead_letter_unusable, event, exc),
                connector=connector,
                component=f"{agent}.dead_letter",
            )
            event.ack()
            return None

    @app.agent(exports, name=f"deliver-{connector}")
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        engine = await holder.engine()
        async for event in concrete_stream(stream).noack().events():
            item = await usable_item(event, "deliver")
            if item is None:
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
                item = await usable_item(event, "retry")
                if item is None:
                    continue
                await delays.put(item, event.ack, written_at=_written_at(event))
        finally:
            releaser.cancel()
