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

Bad requests raise :class:`BackfillError` before anything is read (a tenant id that is not
one, an unknown connector, a tenant without a connection of that connector, a window that is
not one); the broker and Redis raise their own errors.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Final

from confluent_kafka import Message

from connectors.registry import registered
from processors.contracts import default_registry
from processors.operations.errors import RunRequestError
from processors.operations.history import HistoryReader, tenant_partition
from processors.operations.reinject import Reinjector
from processors.redis_client import redis_client
from processors.routing.service import IncomingRecord, RoutingService
from processors.settings import Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = ["BackfillError", "BackfillReport", "BackfillRequest", "run_backfill"]

_TENANT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BATCH: Final = 500

Progress = Callable[[int, int], None]
"""Called after each batch with (offsets read, offsets in the span)."""


class BackfillError(RunRequestError):
    """The backfill asked for cannot be run as asked (nothing was read or produced)."""


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
    by_connector: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, str | int | bool]:
        """The figures the CLI prints as its last JSON line."""
        return {
            "backfill_id": self.backfill_id,
            "matched": self.matched,
            "exported": self.exported,
            "dry_run": self.dry_run,
        }


def _check(request: BackfillRequest) -> None:
    if not _TENANT_ID.fullmatch(request.tenant_id):
        msg = "a tenant id is 1 to 64 letters, digits, '_' or '-'"
        raise BackfillError(msg)
    if request.connector is not None and request.connector not in registered():
        msg = f"unknown connector {request.connector!r} (known: {', '.join(registered())})"
        raise BackfillError(msg)
    if request.since is None and request.from_offset is None:
        msg = "say where to start: a time (since) or an offset (from_offset)"
        raise BackfillError(msg)


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
        raise BackfillError(msg)
    if not owned:
        msg = f"tenant {request.tenant_id} has no connection"
        raise BackfillError(msg)
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


async def run_backfill(
    settings: Settings,
    request: BackfillRequest,
    *,
    progress: Progress | None = None,
    backfill_id: str | None = None,
) -> BackfillReport:
    """Run one backfill to its end; see the module docstring."""
    _check(request)
    report = BackfillReport(
        backfill_id=backfill_id or f"bf_{uuid.uuid4().hex[:16]}", dry_run=request.dry_run
    )
    topics = TopicMap(settings.topics.prefix)
    tenant_key = request.tenant_id.encode()
    redis = redis_client(settings.redis)
    try:
        connections = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
        service = await _routing_service(settings, request, connections)
        with HistoryReader(settings.kafka) as reader:
            source = topics.domain_events
            try:
                span = reader.span(
                    source,
                    tenant_partition(request.tenant_id, reader.partitions(source)),
                    since=request.since,
                    until=request.until,
                    from_offset=request.from_offset,
                )
            except ValueError as exc:
                raise BackfillError(str(exc)) from exc
            records: Iterator[Message] = reader.read(span)
            with Reinjector(settings.kafka, topics) as sender:
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
                        report.by_connector[connector] = report.by_connector.get(connector, 0) + 1
                        if not request.dry_run:
                            sender.queue(
                                record.value,
                                headers,
                                run_id=report.backfill_id,
                                kind="backfill",
                                now_ms=now_ms,
                                topic=record.topic,
                            )
                    if progress is not None:
                        last = chunk[-1].offset() or span.start
                        progress(last + 1 - span.start, span.size)
                if not request.dry_run:
                    await asyncio.to_thread(sender.flush)
    finally:
        await redis.aclose()
    return report
