"""Writing a delivery's outcome: the records a batch produces before it is acknowledged.

The delivery engine (:mod:`processors.deliveries.engine`) decides what happens to each item
of a batch; an :class:`OutcomeWriter` turns each decision into what must be written for it,
collected in the batch's :class:`Outputs`:

- the next hop on the retry topic (a retry, deferral, park or re-queue), with its
  ``qi.retry.*`` headers (:func:`~processors.deliveries.envelope.retry_headers`), and the hop
  number that makes an older copy a leftover;
- the dead-letter record, with the error history and the source position;
- the delivery record (``integrations.delivery-records``) of every outcome.

Nothing here does I/O: the engine's commit writes ``Outputs`` in order (delivered keys,
produce, hops, acknowledgements, index, claim release). Every wait a record is given counts
against its age budget here, in :meth:`OutcomeWriter.reschedule`, whatever its kind: a wait
that would end after ``retry_timeout_seconds`` from the first attempt dead-letters the record
at once, with its history.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.base import bounded_wait
from processors import metrics
from processors.deliveries.envelope import DeliveryItem, retry_headers
from processors.deliveries.models import AttemptError, DeliveryRecord, DeliveryStatus
from processors.routing.service import OutgoingRecord
from processors.settings import DeliverySettings
from processors.topics import TopicMap

__all__ = ["Ack", "OutcomeWriter", "Outputs", "now_dt"]

logger = logging.getLogger(__name__)

Ack = Callable[[], object]
"""Acknowledges a delivery item's source record (releases its offset for commit)."""


def now_dt(now: float) -> datetime:
    """``now`` (epoch seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(now, UTC)


@dataclass(slots=True)
class Outputs:
    """Everything one batch must write before its items are acknowledged."""

    produce: list[OutgoingRecord] = field(default_factory=list)
    records: list[DeliveryRecord] = field(default_factory=list)
    delivered: list[DeliveryItem] = field(default_factory=list)
    hops: list[tuple[str, int]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    claimed: list[DeliveryItem] = field(default_factory=list)
    """Items this engine claimed; released once everything above is written."""


class OutcomeWriter:
    """Builds the retry, dead-letter and delivery records of one connector's outcomes."""

    def __init__(self, *, connector: str, topics: TopicMap, settings: DeliverySettings) -> None:
        self._connector = connector
        self._topics = topics
        self._settings = settings

    def park_or_expire(
        self, outputs: Outputs, item: DeliveryItem, ack: Ack, now: float, *, reason: str
    ) -> None:
        first = item.first_attempt_at_ms / 1000 if item.first_attempt_at_ms else now
        if now + self._settings.park_recheck_seconds - first > self._settings.retry_timeout_seconds:
            error = AttemptError(
                attempt=item.attempts_made,
                at=now_dt(now),
                error_class="ConnectionParked",
                reason=f"{reason}; retry budget spent while parked",
            )
            self.dead_letter(outputs, item, ack, error, now)
            return
        if item.first_attempt_at_ms is None:
            item.first_attempt_at_ms = int(now * 1000)
        self.reschedule(
            outputs, item, ack, kind="parked", delay=self._settings.park_recheck_seconds, now=now
        )

    def reschedule(
        self,
        outputs: Outputs,
        item: DeliveryItem,
        ack: Ack,
        *,
        kind: str,
        delay: float,
        now: float,
        attempts_made: int | None = None,
        last_error: AttemptError | None = None,
    ) -> None:
        """Write ``item``'s next hop to the retry topic, ``delay`` seconds from ``now``.

        Every wait counts against the record's age budget, whatever its kind (a retry, a
        deferral, a pause, a park): a wait that would end after ``retry_timeout_seconds``
        from the first attempt dead-letters the record now, with its history.
        """
        attempts = item.attempts_made if attempts_made is None else attempts_made
        delay = bounded_wait(delay, maximum=math.inf) or 0.0  # NaN and negatives: no wait
        first = item.first_attempt_at_ms / 1000 if item.first_attempt_at_ms is not None else now
        if now + delay - first > self._settings.retry_timeout_seconds:
            spent = f"retry budget spent: a {kind} wait of {delay:.0f}s ends after the " + (
                f"{self._settings.retry_timeout_seconds:.0f}s budget"
            )
            error = (
                last_error.model_copy(update={"reason": f"{last_error.reason}; {spent}"})
                if last_error is not None
                else AttemptError(
                    attempt=attempts,
                    at=now_dt(now),
                    error_class="RetryBudgetSpent",
                    reason=spent,
                )
            )
            self.dead_letter(outputs, item, ack, error, now, attempt=attempts)
            return
        self.next_hop(
            outputs,
            item,
            kind=kind,
            attempts_made=attempts,
            not_before_ms=int((now + delay) * 1000),
            now_ms=int(now * 1000),
        )
        outputs.acks.append(ack)
        status = {
            "retry": DeliveryStatus.RETRY_SCHEDULED,
            "deferred": DeliveryStatus.DEFERRED,
            "parked": DeliveryStatus.PARKED,
            "waiting": DeliveryStatus.WAITING,
        }[kind]
        self.record(outputs, item, status, now, now, attempt=attempts, last_error=last_error)
        metrics.RETRIES_SCHEDULED.labels(self._connector, kind).inc()

    def next_hop(
        self,
        outputs: Outputs,
        item: DeliveryItem,
        *,
        kind: str,
        attempts_made: int,
        not_before_ms: int,
        now_ms: int,
    ) -> None:
        """Write ``item`` to the retry topic as its next hop (a retry, deferral, park or
        re-queue), and record the hop so an older copy read later is dropped."""
        headers = retry_headers(
            item,
            kind=kind,
            attempts_made=attempts_made,
            not_before_ms=not_before_ms,
            now_ms=now_ms,
        )
        outputs.produce.append(
            OutgoingRecord(
                topic=self._topics.retry(self._connector),
                key=item.tenant_id.encode(),
                value=item.value,
                headers=tuple(headers),
            )
        )
        outputs.hops.append((item.delivery_id, item.hop + 1))

    def dead_letter(
        self,
        outputs: Outputs,
        item: DeliveryItem,
        ack: Ack,
        error: AttemptError,
        now: float,
        *,
        attempt: int | None = None,
    ) -> None:
        attempts = item.attempts_made if attempt is None else attempt
        last = item.errors[-1] if item.errors else None
        same = ("attempt", "at", "error_class", "status_code")
        if last is not None and all(getattr(last, f) == getattr(error, f) for f in same):
            item.errors[-1] = error  # the same failure, its reason completed (budget spent)
        else:
            item.errors.append(error)
        extra = {
            "qi.attempt": str(attempts),
            "qi.errors": json.dumps([e.model_dump(mode="json") for e in item.errors[-50:]]),
            "qi.error.class": error.error_class,
            "qi.error.reason": error.reason,
            "qi.error.status": "" if error.status_code is None else str(error.status_code),
            "qi.original.topic": item.source_topic,
            "qi.original.partition": str(item.source_partition),
            "qi.original.offset": str(item.source_offset),
            "qi.payload_included": "true" if self._settings.dlq_include_payload else "false",
        }
        headers = item.envelope_headers() + [(k, v.encode()) for k, v in extra.items()]
        outputs.produce.append(
            OutgoingRecord(
                topic=self._topics.dlq(self._connector),
                key=item.tenant_id.encode(),
                value=item.value if self._settings.dlq_include_payload else b"",
                headers=tuple(headers),
            )
        )
        outputs.acks.append(ack)
        self.record(
            outputs,
            item,
            DeliveryStatus.DEAD_LETTERED,
            now,
            now,
            attempt=attempts,
            last_error=error,
            status_code=error.status_code,
        )
        metrics.DLQ_RECORDS.labels(self._connector, error.error_class).inc()
        logger.warning(
            "delivery.dead_lettered",
            extra={
                "tenant_id": item.tenant_id,
                "connection_id": item.connection_id,
                "delivery_id": item.delivery_id,
                "correlation_id": item.headers["qi.correlation_id"],
                "error_class": error.error_class,
                "status_code": error.status_code,
                "attempt": attempts,
            },
        )

    def record(
        self,
        outputs: Outputs,
        item: DeliveryItem,
        status: DeliveryStatus,
        started: float,
        finished: float,
        *,
        attempt: int | None = None,
        status_code: int | None = None,
        last_error: AttemptError | None = None,
    ) -> None:
        record = DeliveryRecord(
            delivery_id=item.delivery_id,
            event_id=item.headers["qi.event_id"],
            correlation_id=item.headers["qi.correlation_id"],
            tenant_id=item.tenant_id,
            connection_id=item.connection_id,
            connector=self._connector,
            destination=self._connector,
            event_type=item.headers["qi.event_type"],
            idempotency_key=item.idempotency_key,
            entity_id=item.headers["qi.entity_id"],
            entity_version=item.entity_version,
            attempt=item.attempts_made if attempt is None else attempt,
            status=status,
            status_code=status_code,
            last_error=last_error,
            replay_id=item.replay_id,
            started_at=now_dt(started),
            finished_at=now_dt(finished),
            duration_ms=round((finished - started) * 1000, 3),
            source=item.source,
        )
        outputs.records.append(record)
        outputs.produce.append(
            OutgoingRecord(
                topic=self._topics.delivery_records,
                key=item.tenant_id.encode(),
                value=record.model_dump_json().encode(),
                headers=(
                    ("qi.delivery_id", item.delivery_id.encode()),
                    ("qi.correlation_id", item.headers["qi.correlation_id"].encode()),
                    ("qi.status", status.value.encode()),
                ),
            )
        )
