"""Reading and writing topics in integration tests, with confluent-kafka."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.kafka import header_value, producer


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    def header(self, name: str) -> str:
        return self.headers[name]


def produce(
    bootstrap_servers: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Produce keyed records (Java-compatible partitioner) and wait for all acknowledgements.

    A record the broker did not take fails the caller here (its delivery report carries the
    error), so a test never mistakes a record it failed to publish for one the worker lost."""
    from processors.settings import KafkaSettings  # noqa: PLC0415

    client = producer(KafkaSettings(bootstrap_servers=bootstrap_servers))
    failures: list[str] = []

    def report(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for key, value in records:
        while True:
            try:
                client.produce(topic, value=value, key=key, on_delivery=report)
                break
            except BufferError:
                client.poll(0.1)
        count += 1
    assert client.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failures, f"{len(failures)} of {count} records not published: {failures[:3]}"
    return count


class TopicReader:
    """Reads topics from the beginning, accumulating everything seen."""

    def __init__(self, bootstrap_servers: str, topics: list[str], partitions: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "qi-test-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
        self.records: list[ConsumedRecord] = []

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    def poll_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read_batch(0.2)

    def _read_batch(self, timeout: float) -> int:
        messages = self._consumer.consume(1000, timeout=timeout)
        for message in messages:
            if message.error() is not None:
                continue
            raw_headers = message.headers() or []
            names = (
                raw_headers.keys() if isinstance(raw_headers, dict) else [n for n, _ in raw_headers]
            )
            headers = {name: header_value(raw_headers, name) or "" for name in names}
            self.records.append(
                ConsumedRecord(
                    topic=message.topic() or "",
                    partition=message.partition() or 0,
                    offset=message.offset() or 0,
                    key=message.key(),
                    value=message.value(),
                    headers=headers,
                )
            )
        return len(messages)

    def wait_until(
        self, done: Callable[[list[ConsumedRecord]], bool], *, timeout: float, settle: float = 0.0
    ) -> list[ConsumedRecord]:
        """Read until ``done(records)`` holds (then ``settle`` seconds more), or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read_batch(0.2)
            if done(self.records):
                self.poll_for(settle)
                return self.records
        return self.records

    def close(self) -> None:
        self._consumer.close()


_NOT_YET_LED = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _high_watermark(consumer: Consumer, partition: TopicPartition, deadline: float) -> int:
    """The partition's high watermark, asking again while the broker answers a retriable error.

    A topic created a moment ago can answer ``NOT_LEADER_FOR_PARTITION`` until its leader is in
    the broker's metadata: that is a wait, not an empty partition.
    """
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(partition, timeout=20)
            return int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_YET_LED or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_to_end(
    bootstrap_servers: str, topics: list[str], partitions: int, *, timeout: float = 60.0
) -> list[ConsumedRecord]:
    """Every record of ``topics`` up to their high watermarks at the call.

    Unlike :class:`TopicReader` it needs no expected count: it stops once each partition was
    read to the end it had when the call began (``TimeoutError`` if that takes too long).
    """
    reader = TopicReader(bootstrap_servers, topics, partitions)
    try:
        deadline = time.monotonic() + timeout
        ends = {}
        for topic in topics:
            for partition in range(partitions):
                high = _high_watermark(reader.consumer, TopicPartition(topic, partition), deadline)
                if high > 0:
                    ends[(topic, partition)] = high
        seen = 0
        while ends:
            if time.monotonic() > deadline:
                msg = f"reading {topics} timed out with {len(ends)} partitions unfinished"
                raise TimeoutError(msg)
            reader.poll_for(0.2)
            for record in reader.records[seen:]:
                end = ends.get((record.topic, record.partition))
                if end is not None and record.offset + 1 >= end:
                    del ends[(record.topic, record.partition)]
            seen = len(reader.records)
        return reader.records
    finally:
        reader.close()
