"""Consumer lag of the worker's consumer group, exported as ``qi_consumer_lag``.

``qi_consumer_lag{group,topic,partition}`` is the number of records of a partition the group
still has to read: the partition's high watermark minus the group's committed offset. A
partition with no committed offset counts from its low watermark, and so does one whose
committed offset is below it (retention deleted those records: the consumer resets to the
earliest offset, so they will never be read). The topics are the ones the worker consumes:
``queast.domain-events`` and, for each connector in ``QI_WORKER_DELIVERY_CONNECTORS``, its
export and retry topics; a topic that does not exist (yet) has no series.

Decisions:

- It is its own module, started by the worker as one Faust task
  (:func:`register_consumer_lag` in :func:`processors.app.create_app`), not a separate process:
  the worker already serves ``/metrics`` and knows its group and topics, and no extra
  deployment is needed. It reads offsets through its own confluent-kafka clients (an admin
  client for the group's committed offsets, a consumer that never joins any group for the
  watermarks), never through Faust's consumer, so it cannot disturb consumption.
- Every worker exports the lag of the whole group, not only of the partitions assigned to it,
  so a stalled partition is reported by every live worker whoever owns it. The values are the
  same on every worker (up to sampling time): dashboards and alert rules aggregate with
  ``max by (group, topic, partition)``.
- Sampling runs every ``QI_METRICS_LAG_INTERVAL_SECONDS`` (15 s) in a thread
  (:func:`asyncio.to_thread`), so the Kafka round trips never block the event loop. One sample
  has at most ``min(interval, 10 s)``: every request of it gets what is left of that budget.
  At most one sample is in flight: when one outlives its budget, the next round waits for it
  (again bounded) instead of starting another thread.
- A failed or slow sample never stops the worker: it is logged
  (``metrics.consumer_lag.sample_failed`` with the error class, or
  ``metrics.consumer_lag.sample_slow``) and the last values stay exported, so a short broker
  hiccup leaves no gap. Values older than ``max(5 min, 4 intervals)`` are dropped
  (``metrics.consumer_lag.dropped``): a series frozen for longer would claim a lag nobody
  measured. A partition that leaves the sample (its topic deleted) loses its series.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from functools import partial
from typing import Any, Protocol, TypeVar

import faust
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from prometheus_client import Gauge

from processors.kafka import client_config
from processors.metrics import CONSUMER_LAG
from processors.settings import KafkaSettings, Settings
from processors.topics import TopicMap

__all__ = [
    "ConsumerLagExporter",
    "ConsumerLagProbe",
    "LagProbe",
    "LagSampleTimeoutError",
    "consumed_topics",
    "register_consumer_lag",
]

logger = logging.getLogger(__name__)

MAX_SAMPLE_SECONDS = 10.0
"""The most one sample may take, whatever the interval."""
MIN_STALE_SECONDS = 300.0
"""Exported values older than this (or four intervals, if longer) are dropped."""

RETRY_PAUSE_SECONDS = 0.1
"""Pause before asking again after a retriable broker error."""

_LEADERSHIP_ERRORS = frozenset(
    {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}
)
"""Errors of a partition whose leader is moving or not known yet: asked again, not failed."""

PartitionKey = tuple[str, int]
_T = TypeVar("_T")


class LagSampleTimeoutError(Exception):
    """A sample ran out of its time budget between two requests."""


class LagProbe(Protocol):
    """What the exporter samples: the lag of each partition of one group (blocking)."""

    @property
    def group(self) -> str: ...

    def sample(self) -> dict[PartitionKey, int]: ...

    def close(self) -> None: ...


def consumed_topics(settings: Settings) -> list[str]:
    """The topics the worker's consumer group reads."""
    topics = TopicMap(settings.topics.prefix)
    names = [topics.domain_events]
    for connector in settings.worker.delivery_connectors:
        names += [topics.exports(connector), topics.retry(connector)]
    return names


class ConsumerLagProbe:
    """Reads one group's committed offsets and the watermarks of its topics' partitions.

    Blocking: call :meth:`sample` from a thread. The clients are made on first use.
    """

    def __init__(
        self, kafka: KafkaSettings, *, group: str, topics: Sequence[str], timeout: float
    ) -> None:
        self._kafka = kafka
        self._group = group
        self._topics = tuple(topics)
        self._timeout = timeout
        self._admin: AdminClient | None = None
        self._consumer: Consumer | None = None

    @property
    def group(self) -> str:
        return self._group

    def _clients(self) -> tuple[AdminClient, Consumer]:
        if self._admin is None:
            self._admin = AdminClient({**client_config(self._kafka)})
        if self._consumer is None:
            # Never subscribes, assigns or commits: its group id only satisfies the client
            # (librdkafka requires one) and names no group on the broker.
            self._consumer = Consumer(
                {
                    **client_config(self._kafka),
                    "group.id": f"{self._group}.lag-probe",
                    "enable.auto.commit": False,
                }
            )
        return self._admin, self._consumer

    def sample(self) -> dict[PartitionKey, int]:
        """Each existing partition's lag; raises :class:`KafkaException` or
        :class:`LagSampleTimeoutError` when the broker does not answer in time."""
        deadline = time.monotonic() + self._timeout

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LagSampleTimeoutError(self._timeout)
            return remaining

        admin, consumer = self._clients()
        partitions = [
            TopicPartition(topic, number)
            for topic in self._topics
            for number in self._partitions_of(consumer, topic, left())
        ]
        if not partitions:
            return {}
        committed = self._committed(admin, partitions, left)
        lags: dict[PartitionKey, int] = {}
        for partition in partitions:
            key = (partition.topic, partition.partition)
            low, high = _retrying(partial(_watermarks, consumer, partition, left), left)
            start = max(committed.get(key, low), low)
            lags[key] = max(high - start, 0)
        return lags

    @staticmethod
    def _partitions_of(consumer: Consumer, topic: str, timeout: float) -> list[int]:
        described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if described is None or (
            described.error is not None
            and described.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            return []  # not created (yet): nothing to lag behind
        if described.error is not None:
            raise KafkaException(described.error)
        return sorted(described.partitions)

    def _committed(
        self, admin: AdminClient, partitions: list[TopicPartition], left: Callable[[], float]
    ) -> dict[PartitionKey, int]:
        """The group's committed offsets (partitions without one are left out)."""
        request = [ConsumerGroupTopicPartitions(self._group, partitions)]
        futures = admin.list_consumer_group_offsets(request, request_timeout=left())
        result: Any = futures[self._group].result(timeout=left())
        committed: dict[PartitionKey, int] = {}
        for partition in result.topic_partitions or []:
            if partition.error is not None:
                raise KafkaException(partition.error)
            if partition.offset >= 0:  # OFFSET_INVALID (-1001): nothing committed
                committed[(partition.topic, partition.partition)] = partition.offset
        return committed

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._admin = None


class ConsumerLagExporter:
    """Samples a :class:`LagProbe` off the event loop and sets the lag gauge."""

    def __init__(
        self,
        probe: LagProbe,
        *,
        interval: float,
        timeout: float | None = None,
        gauge: Gauge = CONSUMER_LAG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._interval = interval
        self._timeout = min(interval, MAX_SAMPLE_SECONDS) if timeout is None else timeout
        self._stale_after = max(MIN_STALE_SECONDS, 4 * interval)
        self._gauge = gauge
        self._clock = clock
        self._pending: asyncio.Future[dict[PartitionKey, int]] | None = None
        self._exported: set[PartitionKey] = set()
        self._last_success: float | None = None

    async def refresh(self) -> bool:
        """One round: publish a sample (True), or log why not and keep or drop the old values.

        A sample still running when its round gives up is waited for by the next round (and
        published if it succeeds), so at most one thread samples at a time.
        """
        if self._pending is None:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._probe.sample))
            # a sample nobody awaits any more (the task cancelled) reports nothing
            self._pending.add_done_callback(_retrieve)
        pending = self._pending
        group = self._probe.group
        try:
            lags = await asyncio.wait_for(asyncio.shield(pending), self._timeout)
        except TimeoutError:
            logger.warning(
                "metrics.consumer_lag.sample_slow",
                extra={"group": group, "timeout_seconds": self._timeout},
            )
        except Exception as exc:  # the broker, the network, the client: never the worker's end
            self._pending = None
            logger.warning(
                "metrics.consumer_lag.sample_failed",
                extra={"group": group, "error": type(exc).__name__, "code": _code(exc)},
            )
        else:
            self._pending = None
            self._publish(group, lags)
            return True
        self._expire(group)
        return False

    def _publish(self, group: str, lags: Mapping[PartitionKey, int]) -> None:
        self._drop(group, self._exported - set(lags))
        for (topic, partition), lag in lags.items():
            self._gauge.labels(group=group, topic=topic, partition=str(partition)).set(lag)
        self._exported = set(lags)
        self._last_success = self._clock()

    def _expire(self, group: str) -> None:
        if not self._exported or self._last_success is None:
            return
        age = self._clock() - self._last_success
        if age < self._stale_after:
            return
        self._drop(group, self._exported)
        self._exported = set()
        logger.warning(
            "metrics.consumer_lag.dropped", extra={"group": group, "age_seconds": round(age)}
        )

    def _drop(self, group: str, keys: Iterable[PartitionKey]) -> None:
        for topic, partition in keys:
            with suppress(KeyError):
                self._gauge.remove(group, topic, str(partition))

    async def run(self) -> None:
        """Refresh every interval until cancelled."""
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(self._interval)
        finally:
            if self._pending is None or self._pending.done():
                self._probe.close()  # else the thread still uses it: the process ends it


def _code(exc: Exception) -> str | None:
    """The Kafka error code's name of a client exception (``NOT_LEADER_FOR_PARTITION``)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error.name() if isinstance(error, KafkaError) else None


def _watermarks(
    consumer: Consumer, partition: TopicPartition, left: Callable[[], float]
) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(partition, timeout=left(), cached=False)
    return low, high


def _retrying(call: Callable[[], _T], left: Callable[[], float]) -> _T:
    """``call()``, again after a retriable broker error (a leader moving, a new topic's metadata
    not there yet) while the sample's budget lasts."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (
                isinstance(error, KafkaError)
                and (error.retriable() or error.code() in _LEADERSHIP_ERRORS)
            ):
                raise
            time.sleep(min(RETRY_PAUSE_SECONDS, left()))


def _retrieve(future: asyncio.Future[dict[PartitionKey, int]]) -> None:
    if not future.cancelled():
        future.exception()


def register_consumer_lag(app: faust.App, settings: Settings) -> ConsumerLagExporter:
    """Start sampling the worker group's lag with the app (a Faust task)."""
    interval = settings.metrics.lag_interval_seconds
    probe = ConsumerLagProbe(
        settings.kafka,
        group=settings.worker.app_id,
        topics=consumed_topics(settings),
        timeout=min(interval, MAX_SAMPLE_SECONDS),
    )
    exporter = ConsumerLagExporter(probe, interval=interval)

    async def export_consumer_lag() -> None:
        await exporter.run()

    app.task(export_consumer_lag)
    return exporter
