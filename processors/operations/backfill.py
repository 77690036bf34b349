"""Backfill: map a tenant's past domain events again, with today's connections.

A connection added today has none of the artifacts its tenant's events produced before it
existed. :func:`run_backfill` reads ``queast.domain-events`` on the tenant's partition (from a
time or an offset, to a time or the end seen when it starts; :mod:`.history`, without a
consumer group), keeps the records keyed by that tenant, and routes them with the same
:class:`~processors.routing.service.RoutingService` the routing agent uses, so the exports are
exactly what the live path would write today: same contracts, same idempotency keys.

- With ``connector`` the exports of that connector's connection only (its webhook copy
  included); without it, every connection of the tenant.
- The exports are appended to ``integrations.exports.<C>``: they are new artifacts and become
  history that a replay can find. Each carries the backfill's id (``qi.replay_id``, recorded
  in every delivery record) and ``qi.run.kind: backfill``, and a delivery id of the run's own.
- A destination that already has an artifact does not get it twice: the delivery engine skips
  a delivered idempotency key for a backfill (only a replay re-sends), and the stale-version
  guard keeps an older version from overwriting a newer one. A second backfill of the same
  window therefore exports again (history shows both runs) and delivers nothing twice.
- An event the live path dead-lettered is counted as ``invalid`` and not dead-lettered again
  (it already is, on ``integrations.dlq.invalid-events``); events no connection takes today
  are counted as ``skipped``.
- ``dry_run`` reads and maps everything and produces nothing.

Bad requests raise :class:`BackfillError` (``field`` names the culprit) before anything is
read: a tenant id that is not one, an unknown connector, a tenant off the allowlist or without
a connection (of that connector), no start or both a ``since`` and a ``from_offset``, a
negative offset, a time without a zone, an ``until`` not after ``since``, or a window from
``since`` longer than ``QI_REPLAY_MAX_WINDOW_SECONDS`` (a backfill from an offset is bounded
by the partition's end seen when it starts). The broker and Redis raise their own errors.

Every backfill is a run of :class:`~processors.operations.runs.RunStore` (kind ``backfill``,
id ``bf_…``), as a replay is (:class:`BackfillService`): status, ``matched``, ``exported``,
``invalid`` and ``unrouted`` written after each batch with a heartbeat; ``delivered``,
``failed`` and ``skipped`` counted by the delivery engine from the records carrying its id. One
backfill that produces (not a dry run) is active per tenant and connector choice (a connector,
or ``*`` for every connection): a second is refused with
:class:`~processors.operations.runs.ActiveRunError`. A cancel is honoured between batches (the
exports already produced stay). The run's record keeps ``QI_REPLAY_RUN_TTL_SECONDS`` and goes
stale after ``QI_REPLAY_HEARTBEAT_STALE_SECONDS``, the replay settings (one set of bounds for
operator runs); the API's hourly rate per tenant is ``QI_REPLAY_RUNS_PER_HOUR``, counted apart
from replays. The blocking Kafka work runs in a worker thread, a batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Final

from confluent_kafka import Message
from redis.asyncio import Redis

from connectors.registry import registered
from processors.auth import TENANT_ID_PATTERN
from processors.contracts import default_registry
from processors.operations.errors import RunInputError
from processors.operations.history import HistoryReader
from processors.operations.reinject import Reinjector
from processors.operations.run_service import RunService
from processors.operations.runs import (
    ALL_CONNECTORS,
    RunRecord,
    RunStatus,
)
from processors.redis_client import redis_client
from processors.routing.service import IncomingRecord, RoutingService
from processors.settings import ReplaySettings, Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = [
    "KIND",
    "BackfillError",
    "BackfillReport",
    "BackfillRequest",
    "BackfillService",
    "run_backfill",
]

logger = logging.getLogger(__name__)

KIND: Final = "backfill"
_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)
_BATCH: Final = 500

Progress = Callable[[int, int], None]
"""Called after each batch with (offsets read, offsets in the span)."""


class BackfillError(RunInputError):
    """The backfill asked for cannot be run as asked (nothing was read or produced)."""

    def __init__(self, message: str, *, field: str = "tenant") -> None:
        super().__init__(field, message)


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    tenant_id: str
    connector: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    from_offset: int | None = None
    dry_run: bool = False


@dataclass(slots=True)
class BackfillReport:
    backfill_id: str
    dry_run: bool
    matched: int = 0
    """Records of the tenant read from the domain events."""
    exported: int = 0
    """Exports produced (or, in a dry run, that would be)."""
    invalid: int = 0
    skipped: int = 0
    """Events of the tenant no connection takes today (``unrouted`` on the run)."""
    by_connector: dict[str, int] = field(default_factory=dict)
    status: RunStatus = RunStatus.COMPLETED
    """How the run ended (``cancelled`` if an operator cancelled it between batches)."""

    def summary(self) -> dict[str, str | int | bool]:
        """The figures the CLI prints as its last JSON line."""
        return {
            "backfill_id": self.backfill_id,
            "matched": self.matched,
            "exported": self.exported,
            "dry_run": self.dry_run,
        }

    def counts(self) -> dict[str, object]:
        """The figures written on the run after each batch."""
        return {
            "matched": self.matched,
            "exported": self.exported,
            "invalid": self.invalid,
            "unrouted": self.skipped,
        }


def _aware(name: str, moment: datetime | None) -> None:
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        msg = f"{name} must carry a time zone (e.g. 2026-12-04T10:00Z)"
        raise BackfillError(msg, field=name)


def _check(request: BackfillRequest, limits: ReplaySettings, now: datetime) -> None:
    if not _TENANT_ID.fullmatch(request.tenant_id):
        msg = "a tenant id is 1 to 64 letters, digits, '_' or '-'"
        raise BackfillError(msg)
    if request.connector is not None and request.connector not in registered():
        msg = f"unknown connector {request.connector!r} (known: {', '.join(registered())})"
        raise BackfillError(msg, field="connector")
    if request.since is None and request.from_offset is None:
        msg = "say where to start: a time (since) or an offset (from_offset)"
        raise BackfillError(msg, field="since")
    if request.since is not None and request.from_offset is not None:
        msg = "start from a time (since) or from an offset (from_offset), not both"
        raise BackfillError(msg, field="from_offset")
    if request.from_offset is not None and request.from_offset < 0:
        raise BackfillError("from_offset is an offset: 0 or more", field="from_offset")
    _aware("since", request.since)
    _aware("until", request.until)
    if request.since is not None and request.until is not None and request.until <= request.since:
        msg = "the window ends before its start (until must be after since)"
        raise BackfillError(msg, field="until")
    if request.since is not None:
        end = request.until or now
        if (end - request.since).total_seconds() > limits.max_window_seconds:
            days = limits.max_window_seconds / 86400
            msg = f"the window is longer than the maximum ({days:g} days); start from an offset"
            raise BackfillError(msg, field="since")


async def _routing_service(
    settings: Settings, request: BackfillRequest, connections: ConnectionRepository
) -> RoutingService:
    routing = (await connections.routing_for([request.tenant_id]))[request.tenant_id]
    if not routing.allowlisted:
        msg = f"tenant {request.tenant_id} is not on the allowlist"
        raise BackfillError(msg)
    owned = {c.connector.value for c in routing.connections}
    if request.connector is not None and request.connector not in owned:
        msg = f"tenant {request.tenant_id} has no {request.connector} connection"
        raise BackfillError(msg, field="connector")
    if not owned:
        msg = f"tenant {request.tenant_id} has no connection"
        raise BackfillError(msg, field="connector")
    return RoutingService(
        topics=TopicMap(settings.topics.prefix),
        connections=connections,
        registry=default_registry(),
        settings=settings.routing,
    )


def _incoming(message: Message) -> IncomingRecord:
    return IncomingRecord(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
    )


def request_of(run: RunRecord) -> BackfillRequest:
    """The request a backfill run was started with."""
    return BackfillRequest(
        tenant_id=run.tenant_id,
        connector=None if run.connector == ALL_CONNECTORS else run.connector,
        since=run.since,
        until=run.until,
        from_offset=run.from_offset,
        dry_run=run.dry_run,
    )


class BackfillService(RunService[BackfillRequest]):
    """Validates, records and carries out backfills; see the module docstring."""

    kind = KIND

    def __init__(
        self, settings: Settings, redis: Redis, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(settings, redis, clock=clock)
        self._connections = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)

    async def validate(self, request: BackfillRequest) -> RoutingService:
        """:class:`BackfillError` if the request cannot be run; else the routing it runs with."""
        _check(request, self._settings.replay, self._now())
        return await _routing_service(self._settings, request, self._connections)

    async def start(
        self, request: BackfillRequest, *, requested_by: str = "cli", backfill_id: str | None = None
    ) -> RunRecord:
        """Validate and record a queued run (:class:`ActiveRunError` if one is active)."""
        await self.validate(request)
        asked = {
            **asdict(request),
            "connector": request.connector or ALL_CONNECTORS,
            "requested_by": requested_by,
        }
        return await self._record(asked, run_id=backfill_id)

    async def execute(self, run: RunRecord, *, progress: Progress | None = None) -> BackfillReport:
        """Carry out a started run to its end (its status says how it ended).

        An error ends the run ``failed`` and is raised again; cancelling the calling task ends
        it ``cancelled``.
        """
        request = request_of(run)
        report = BackfillReport(backfill_id=run.run_id, dry_run=run.dry_run)
        run = await self.store.update(run, {"status": RunStatus.RUNNING, "started_at": self._now()})
        logger.info("backfill.run.started", extra=self._log_fields(run, report.counts()))
        try:
            service = await self.validate(request)
            status = await self._read(run, request, service, report, progress)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._end(run, report.counts(), RunStatus.CANCELLED, "cancelled")
                )
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._end(
                    run, report.counts(), RunStatus.FAILED, str(exc) or type(exc).__name__
                )
            raise
        await self._end(run, report.counts(), status, None)
        report.status = status
        return report

    async def _read(
        self,
        run: RunRecord,
        request: BackfillRequest,
        service: RoutingService,
        report: BackfillReport,
        progress: Progress | None,
    ) -> RunStatus:
        topics = self._topics
        tenant_key = request.tenant_id.encode()
        reader = await asyncio.to_thread(HistoryReader, self._settings.kafka)
        try:
            try:
                span = await asyncio.to_thread(
                    reader.tenant_span,
                    topics.domain_events,
                    request.tenant_id,
                    since=request.since,
                    until=request.until,
                    from_offset=request.from_offset,
                )
            except ValueError as exc:
                raise BackfillError(str(exc), field="since") from exc
            records: Iterator[Message] = reader.read(span)
            with Reinjector(self._settings.kafka, topics) as sender:
                try:
                    while True:
                        chunk = await asyncio.to_thread(lambda: list(islice(records, _BATCH)))
                        if not chunk:
                            break
                        mine = [_incoming(m) for m in chunk if m.key() == tenant_key]
                        report.matched += len(mine)
                        routed = await service.route(mine)
                        report.invalid += routed.invalid
                        report.skipped += routed.skipped
                        now_ms = int(time.time() * 1000)
                        for record in routed.records:
                            if record.topic == topics.invalid_events:
                                continue
                            headers = {k: v.decode(errors="replace") for k, v in record.headers}
                            owner = headers.get("qi.owner_connector") or headers["qi.connector"]
                            if request.connector is not None and owner != request.connector:
                                continue
                            report.exported += 1
                            connector = headers["qi.connector"]
                            report.by_connector[connector] = (
                                report.by_connector.get(connector, 0) + 1
                            )
                            if not request.dry_run:
                                sender.queue(
                                    record.value,
                                    headers,
                                    run_id=report.backfill_id,
                                    kind=KIND,
                                    now_ms=now_ms,
                                    topic=record.topic,
                                )
                        if progress is not None:
                            last = chunk[-1].offset() or span.start
                            progress(last + 1 - span.start, span.size)
                        run = await self.store.update(run, report.counts())
                        if await self.store.cancel_requested(run.run_id):
                            if isinstance(records, Generator):
                                records.close()  # the reader lets go of the partition now
                            return RunStatus.CANCELLED
                    return RunStatus.COMPLETED
                finally:
                    if not request.dry_run:  # whatever ended the run, hand over what was made
                        await asyncio.to_thread(sender.flush)
        finally:
            await asyncio.to_thread(reader.close)


async def run_backfill(
    settings: Settings,
    request: BackfillRequest,
    *,
    progress: Progress | None = None,
    backfill_id: str | None = None,
    requested_by: str = "cli",
) -> BackfillReport:
    """Record and run one backfill to its end (the CLI's way); see the module docstring."""
    _check(request, settings.replay, datetime.now(UTC))
    redis = redis_client(settings.redis)
    try:
        service = BackfillService(settings, redis)
        run = await service.start(request, requested_by=requested_by, backfill_id=backfill_id)
        return await service.execute(run, progress=progress)
    finally:
        await redis.aclose()
