"""Waiting for a topic just created to be readable (its partitions have leaders)."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import KafkaException

from processors.operations.history import HistoryError, HistoryReader
from processors.settings import KafkaSettings


async def end_offsets(kafka: KafkaSettings, topic: str, *, within: float = 30.0) -> list[int]:
    """The end offset of each partition of ``topic``, once every partition has a leader (a
    topic just created answers "not leader" for a moment)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with HistoryReader(kafka) as reader:
                return [reader.span(topic, p).end for p in range(reader.partitions(topic))]
        except (KafkaException, HistoryError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
