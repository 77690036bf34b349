"""Reading one tenant's history from a topic, without a consumer group and without writing.

Every topic family is keyed by tenant id with the Java client's partitioner (see
:mod:`processors.kafka`), so a tenant's whole history of a topic is on one partition:
:func:`tenant_partition`. Operators' runs (replay, backfill, dead-letter listing and redrive)
read that partition between two offsets with :class:`HistoryReader`:

- the range is fixed when the run starts (:meth:`HistoryReader.span`): ``since`` and ``until``
  become offsets through the broker's time index (``offsets_for_times``; a time after the last
  record is the end of the partition), ``from_offset`` is taken as given but never below the
  partition's low watermark (older records are gone with retention), and the end is never past
  the high watermark seen at that moment, so records appended while a run reads are not part
  of it;
- the reader *assigns* the partition (no group membership, no rebalance) and never commits:
  the live consumer groups' offsets are untouched and no group is left behind on the broker;
- a range that cannot be read to its end within the idle timeout (a broker gone away) raises
  :class:`HistoryError` instead of returning a silently short history.

Times are time-zone aware; a naive ``datetime`` is refused (an operator's "since 10:00" in the
wrong zone would replay the wrong hour).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.kafka import client_config
from processors.operations.errors import RunFailedError
from processors.settings import KafkaSettings

__all__ = [
    "HistoryError",
    "HistoryReader",
    "OffsetSpan",
    "record_headers",
    "require_aware",
    "tenant_partition",
]

_BATCH: Final = 500
_PASSING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)
"""Errors of a topic just created or a broker restarting (librdkafka names its own local
errors with a leading underscore): retried until the timeout."""


class HistoryError(RunFailedError):
    """A topic's history could not be read as asked (unknown topic, broker unreachable)."""


def tenant_partition(tenant_id: str, partitions: int) -> int:
    """The partition of ``tenant_id`` in a topic of ``partitions`` (Kafka's default)."""
    if partitions < 1:
        msg = "a topic has at least one partition"
        raise ValueError(msg)
    return (murmur2(tenant_id.encode()) & 0x7FFFFFFF) % partitions


def record_headers(message: Message) -> dict[str, str]:
    """A consumed record's headers as text (the first value of a repeated name wins)."""
    headers: dict[str, str] = {}
    raw = message.headers() or []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        if name not in headers:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            headers[name] = text or ""
    return headers


@dataclass(frozen=True, slots=True)
class OffsetSpan:
    """The records ``[start, end)`` of one partition of a topic."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """How many offsets the span covers (compaction or transactions may leave gaps)."""
        return max(0, self.end - self.start)


def require_aware(moment: datetime) -> datetime:
    """``moment``, if it carries a time zone (an instant); else ``ValueError``."""
    if moment.utcoffset() is None:
        msg = "times must carry a time zone (e.g. 2026-12-04T10:00:00Z)"
        raise ValueError(msg)
    return moment


def _epoch_ms(moment: datetime) -> int:
    return int(require_aware(moment).timestamp() * 1000)


class HistoryReader(AbstractContextManager["HistoryReader"]):
    """Reads spans of one topic partition at a time; see the module docstring."""

    def __init__(self, kafka: KafkaSettings, *, timeout: float = 10.0) -> None:
        config: dict[str, str | int | bool] = {
            **client_config(kafka),
            # required by the client, never joined (assign only) and never committed to
            "group.id": f"qi-history-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(config)
        self._timeout = timeout

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has; :class:`HistoryError` if it does not exist."""
        metadata = self._consumer.list_topics(topic, timeout=self._timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            msg = f"topic {topic} does not exist"
            raise HistoryError(msg)
        return len(found.partitions)

    def span(
        self,
        topic: str,
        partition: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        from_offset: int | None = None,
    ) -> OffsetSpan:
        """The offsets of ``partition`` between ``since``/``from_offset`` and ``until``."""
        if since is not None and from_offset is not None:
            msg = "give a start time or a start offset, not both"
            raise ValueError(msg)
        if from_offset is not None and from_offset < 0:
            msg = "a start offset is not negative"
            raise ValueError(msg)
        since_ms = None if since is None else _epoch_ms(since)
        until_ms = None if until is None else _epoch_ms(until)
        if since_ms is not None and until_ms is not None and until_ms < since_ms:
            msg = "the end of the window is before its start"
            raise ValueError(msg)
        low, high = self._watermarks(topic, partition)
        start = low
        if from_offset is not None:
            start = max(low, from_offset)
        elif since_ms is not None:
            start = max(low, self._offset_at(topic, partition, since_ms, default=high))
        end = high
        if until_ms is not None:
            end = min(high, self._offset_at(topic, partition, until_ms + 1, default=high))
        return OffsetSpan(topic, partition, min(start, end), end)

    def tenant_span(
        self,
        topic: str,
        tenant_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        from_offset: int | None = None,
    ) -> OffsetSpan:
        """:meth:`span` of the partition of ``topic`` that holds ``tenant_id``'s records."""
        partition = tenant_partition(tenant_id, self.partitions(topic))
        return self.span(topic, partition, since=since, until=until, from_offset=from_offset)

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """The partition's low and high watermarks, waiting out a leader election (a topic
        just created, a broker restarting) for up to the timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._timeout, cached=False
                )
            except KafkaException as exc:
                error = exc.args[0]
                passing = error.retriable() or error.code() in _PASSING
                if not passing or time.monotonic() > deadline:
                    msg = f"cannot read the offsets of {topic}[{partition}]: {error.str()}"
                    raise HistoryError(msg) from exc
                time.sleep(0.2)
                continue
            return int(low), int(high)

    def _offset_at(self, topic: str, partition: int, at_ms: int, *, default: int) -> int:
        """The first offset whose timestamp is at or after ``at_ms`` (``default``: none)."""
        found = self._consumer.offsets_for_times(
            [TopicPartition(topic, partition, at_ms)], timeout=self._timeout
        )
        offset = found[0].offset
        if found[0].error is not None:
            msg = f"cannot look up offsets of {topic}[{partition}]"
            raise HistoryError(msg)
        return default if offset < 0 else int(offset)

    def read(self, span: OffsetSpan) -> Iterator[Message]:
        """The records of ``span`` in offset order; :class:`HistoryError` if it stalls."""
        if span.size == 0:
            return
        position = span.start
        self._consumer.assign([TopicPartition(span.topic, span.partition, span.start)])
        idle_since = time.monotonic()
        try:
            while position < span.end:
                messages = self._consumer.consume(_BATCH, timeout=0.5)
                progressed = False
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.fatal() or not error.retriable():
                            msg = f"reading {span.topic}[{span.partition}] failed: {error.str()}"
                            raise HistoryError(msg)
                        continue  # a passing broker hiccup: the idle timeout bounds it
                    offset = message.offset()
                    if offset is None or offset >= span.end:
                        position = span.end
                        break
                    position = offset + 1
                    progressed = True
                    yield message
                if not progressed and position < span.end:
                    # compaction or transaction markers leave offsets without records
                    [current] = self._consumer.position(
                        [TopicPartition(span.topic, span.partition)]
                    )
                    if current.offset >= span.end:
                        break
                    if time.monotonic() - idle_since > self._timeout:
                        msg = (
                            f"reading {span.topic}[{span.partition}] stalled at offset "
                            f"{position} of {span.end}"
                        )
                        raise HistoryError(msg)
                else:
                    idle_since = time.monotonic()
        finally:
            self._consumer.unassign()
