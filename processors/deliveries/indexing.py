"""Background indexing of the delivery engine's records in Redis, every 100 ms.

The delivery engine (:mod:`processors.deliveries.engine`) hands each committed batch's
delivery records to its :class:`RecordIndexer`, which indexes what has gathered from every
lane in one pipeline (:meth:`~processors.deliveries.records.DeliveryRecordIndex.add_many`)
every 100 ms. The index serves the API; the topic is the durable copy (records indexed here
are already on ``integrations.delivery-records``), so a crash loses at most 100 ms of index.
If Redis fails, the records are kept for the next round (``delivery.index.failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from processors.deliveries.models import DeliveryRecord
from processors.deliveries.records import DeliveryRecordIndex

__all__ = ["RecordIndexer"]

logger = logging.getLogger(__name__)

_INDEX_INTERVAL_SECONDS = 0.1


class RecordIndexer:
    """Buffers delivery records and indexes them in the background."""

    def __init__(self, records: DeliveryRecordIndex) -> None:
        self._records = records
        self._buffer: list[DeliveryRecord] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, records: Sequence[DeliveryRecord]) -> None:
        """Index ``records`` within the next round (starts the background task if needed)."""
        self._buffer.extend(records)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="delivery-index")

    async def _loop(self) -> None:
        while self._buffer:
            await asyncio.sleep(_INDEX_INTERVAL_SECONDS)
            batch, self._buffer = self._buffer, []
            try:
                await self._records.add_many(batch)
            except Exception as exc:  # Redis down: keep the records for the next round
                logger.warning("delivery.index.failed", extra={"error": type(exc).__name__})
                self._buffer[:0] = batch

    async def flush(self) -> None:
        """Index everything buffered now (shutdown, tests)."""
        batch, self._buffer = self._buffer, []
        if batch:
            await self._records.add_many(batch)

    async def close(self) -> None:
        """Stop the background task, then index what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
