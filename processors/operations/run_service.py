"""What the services of operator runs share (:mod:`.replay`, :mod:`.backfill`).

A run service validates a request, records it as a queued run of its kind in the
:class:`~processors.operations.runs.RunStore` and carries it out. The store, the bounds
(``QI_REPLAY_*``: one set for every kind of run), the clock, the way a request becomes a run
record, and how a run's end is written and logged (``{kind}.run.failed`` with the error, else
``{kind}.run.ended``, by the kind's module logger, with the run's id as ``{kind}_id`` and its
counts) are the same for every kind; what a kind checks, reads and counts is its own.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

from redis.asyncio import Redis

from processors.operations.runs import RunRecord, RunStatus, RunStore, new_run_id
from processors.settings import ReplaySettings, Settings
from processors.topics import TopicMap

__all__ = ["RunService"]

RequestT = TypeVar("RequestT")


class RunService(ABC, Generic[RequestT]):
    """The store, bounds and clock of one kind of run (``kind``), and how a run is recorded."""

    kind: ClassVar[str]

    def __init__(
        self, settings: Settings, redis: Redis, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._clock = clock
        self._logger = logging.getLogger(type(self).__module__)
        self._topics = TopicMap(settings.topics.prefix)
        self.store = RunStore(
            redis,
            key_prefix=settings.redis.key_prefix,
            run_ttl_seconds=settings.replay.run_ttl_seconds,
            heartbeat_stale_seconds=settings.replay.heartbeat_stale_seconds,
        )

    @property
    def limits(self) -> ReplaySettings:
        return self._settings.replay

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @abstractmethod
    async def validate(self, request: RequestT) -> object:
        """Refuse a request that cannot be run (:class:`~.errors.RunInputError`)."""

    @abstractmethod
    async def execute(self, run: RunRecord) -> object:
        """Carry out a started run to its end."""

    async def _record(self, asked: Mapping[str, object], *, run_id: str | None = None) -> RunRecord:
        """Store a queued run of this kind asked with ``asked`` (the run's request fields).

        Raises :class:`~processors.operations.runs.ActiveRunError` if one is active.
        """
        run = RunRecord.model_validate(
            {
                **asked,
                "run_id": run_id or new_run_id(self.kind),
                "kind": self.kind,
                "status": RunStatus.QUEUED,
                "created_at": self._now(),
            }
        )
        return await self.store.create(run)

    def _log_fields(self, run: RunRecord, counts: Mapping[str, object]) -> dict[str, object]:
        """What a run's log lines carry: its id, tenant, connector, status, dry run, counts."""
        return {
            f"{self.kind}_id": run.run_id,
            "tenant_id": run.tenant_id,
            "connector": run.connector,
            "status": run.status.value,
            "dry_run": run.dry_run,
            **counts,
        }

    async def _end(
        self, run: RunRecord, counts: Mapping[str, object], status: RunStatus, error: str | None
    ) -> RunRecord:
        """Write the run's end (its ``counts``, ``status`` and ``error``) and log it."""
        changes = {**counts, "status": status, "error": error}
        ended = await self.store.update(run, changes, ended=True)
        fields = self._log_fields(ended, counts)
        if status is RunStatus.FAILED:
            self._logger.warning(f"{self.kind}.run.failed", extra={**fields, "error": error})
        else:
            self._logger.info(f"{self.kind}.run.ended", extra=fields)
        return ended
