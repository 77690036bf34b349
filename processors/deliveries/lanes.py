"""A destination's lane: its bounded queues and what the engine caches for it.

One lane per *destination* (a connection as delivered by one connector, keyed by
:func:`~processors.deliveries.envelope.destination_key`), with ``lane_concurrency`` bounded
queues, each served by one task of the delivery engine (:mod:`processors.deliveries.engine`).
An entity always goes to the same queue (by a hash of its version field), so versions of one
entity are sent in order while different entities go in parallel. A full queue means the
destination is slow, limited or down; the engine then defers the item (:func:`defer_delay`
says for how long).

A queue holds at least ``lane_batches`` full batches of a batching connector (its bulk limit,
``max_batch_size`` records a request): with less, writes go out partly empty while the
partner's limit counts requests, not records, and a backlog is deferred record by record
instead of written.

The lane also caches the destination's connection record, health and failing-breaker
(:mod:`processors.deliveries.breaker`; reloaded every few seconds), its sink (rebuilt when
the connection record changes) and how long the destination asked to be left alone (a 429 or
503 with a wait).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.base import BaseSink
from processors.deliveries.breaker import Breaker
from processors.deliveries.envelope import DeliveryItem
from processors.deliveries.outputs import Ack
from processors.deliveries.state import ConnectionState
from processors.settings import DeliverySettings
from processors.tenants.models import ConnectionRecord, Connector

__all__ = ["Lane", "LaneQueue", "defer_delay", "new_lane"]

LaneQueue = asyncio.Queue[tuple[DeliveryItem, Ack]]
"""Items waiting for a lane task, each with the callback that acknowledges its source."""


@dataclass(slots=True)
class Lane:
    """One destination's bounded queues (one per task; an entity always on the same one).

    ``key`` is the destination key; ``owner`` the connector whose connection record it loads.
    """

    tenant_id: str
    connection_id: str
    key: str
    owner: Connector
    queues: list[LaneQueue]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    connection: ConnectionRecord | None = None
    health: ConnectionState | None = None
    breaker: Breaker = field(default_factory=Breaker)
    """This worker's copy of the destination's breaker (reloaded with the connection, and
    replaced by every update this worker makes)."""
    connection_loaded_at: float = float("-inf")
    sink: BaseSink[Any] | None = None
    sink_version: datetime | None = None
    sink_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    paused_until: float = 0.0
    """The destination asked us to slow down (429/503 with a wait) until this time."""

    def queue_for(self, item: DeliveryItem) -> LaneQueue:
        """The queue of ``item``'s entity."""
        return self.queues[zlib.crc32(item.version_field.encode()) % len(self.queues)]

    def queued(self) -> int:
        return sum(queue.qsize() for queue in self.queues)

    def drop_partitions(self, gone: Collection[tuple[str, int]]) -> int:
        """Drop the queued items read from a partition in ``gone``; returns how many."""
        dropped = 0
        for queue in self.queues:
            kept: list[tuple[DeliveryItem, Ack]] = []
            while True:
                try:
                    entry = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if (entry[0].source_topic, entry[0].source_partition) in gone:
                    dropped += 1
                else:
                    kept.append(entry)
            for entry in kept:  # fewer than were taken out: always fits
                queue.put_nowait(entry)
        return dropped


def new_lane(
    item: DeliveryItem, *, connector: str, settings: DeliverySettings, max_batch_size: int
) -> Lane:
    """The lane of ``item``'s destination, its queues sized (see the module doc), no tasks."""
    tasks = settings.lane_concurrency
    capacity = max(settings.lane_capacity // tasks, settings.lane_batches * max_batch_size, 1)
    return Lane(
        tenant_id=item.tenant_id,
        connection_id=item.connection_id,
        key=item.destination_key,
        # exports from before qi.owner_connector are owned by the delivering connector
        owner=Connector(
            item.owner_connector if item.headers.get("qi.owner_connector") else connector
        ),
        queues=[asyncio.Queue(maxsize=capacity) for _ in range(tasks)],
    )


def defer_delay(queue: LaneQueue, settings: DeliverySettings) -> float:
    """Roughly how long a full queue needs to drain, within the configured bounds."""
    estimate = queue.qsize() * 0.05
    return min(max(estimate, settings.defer_min_seconds), settings.defer_max_seconds)
