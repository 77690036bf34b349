"""The delivery engine: per-connection lanes in front of the connector sinks.

One engine per connector per worker, shared by the delivery agent (export topic) and the
retry agent (retry topic). The agents hand it items with an ``ack`` callback and never wait for
a partner:

- :meth:`DeliveryEngine.submit` puts the item in its connection's lane: ``lane_concurrency``
  bounded queues, each served by one task, an entity always on the same queue, so versions of
  one entity are sent in order while different entities go in parallel. A full queue means the
  destination is slow, limited or down: the item is *deferred* (written to the retry topic
  with a short ``not_before``, no attempt spent) and the partition moves on. One tenant's
  trouble never delays another tenant.
- A lane task takes up to the connector's bulk limit of items (never more: what a sink sent
  but the engine has not recorded yet is sent again after a crash, so the round bounds what a
  crash re-sends; a round of several versions of one entity sent one request each, re-sent
  after a crash, would put older versions after the newest at the partner. Rounds of 20
  webhook records were tried and failed the worker-kill fault scenario that way) and *claims*
  them in Redis in one round trip
  (:meth:`~processors.deliveries.state.DeliveryStateRepository.claim`): one atomic
  script per item drops stale copies, skips keys already delivered and versions older than the
  newest one claimed for that destination, and leases the entity at that destination to this
  engine (raising its newest version to the claimed one). Only
  claimed items are sent: the engine takes tokens from the global throttle and calls the sink,
  renewing its leases while the partner answers, writes the outcomes, and then releases the
  claims. An entity leased by another worker (a partition that moved in a rebalance while the
  old owner still held its records, or a worker that died holding the lease) is deferred to
  the retry topic, no attempt spent, and decided when it comes back. So two workers never send
  one entity to one destination at the same time, and an older version is never sent after a
  newer one was delivered; the protocol and its limits are in :mod:`processors.deliveries.state`.
- Every outcome is written before the item is acknowledged: the retry or dead-letter record and
  the delivery record are produced and acknowledged by the broker, delivered keys are marked in
  Redis, and only then is the source offset released for commit. A crash anywhere re-delivers
  at most the items in flight, and the dedupe keys stop most of those from being sent again.
- A Redis or Kafka error while writing an outcome (a deferral in :meth:`DeliveryEngine.submit`,
  a lane's batch) never escapes to the agents: the write is tried again with capped exponential
  backoff, resuming at the step that failed (a step already written is not repeated, a partner
  already called is not called again), and nothing is acknowledged until every step is
  written. Each failed try is logged (``delivery.commit.retrying``) and counted in
  ``qi_backend_retries_total{component="delivery.commit"}``.

Outcomes: 2xx delivered; transient errors retried with exponential backoff and full jitter
inside the retry budget, then dead-lettered with the error history; permanent errors
dead-lettered at once; a 429 or 503 with ``Retry-After`` also pauses the whole connection for
that long (its other records wait in the lane or are deferred, no attempt spent); 410
dead-letters the record and marks the connection ``gone``; 401 marks it ``needs_reauth``;
records of a gone, unauthorised or disabled connection are parked on the retry topic (no
attempt spent) until the connection is updated, or until the age budget ends.

Failing destinations (the breaker, :mod:`processors.deliveries.breaker`, states and
transitions there): after each batch the engine counts its outcome into the destination's
breaker in Redis (a delivered record clears it; a batch whose every attempted record failed
transiently counts one failure; nothing else counts). A destination failing past the threshold
or the window is ``failing``: before sending, :meth:`DeliveryEngine._breaker_gate` lets one
probe record through when the probe is due and this lane wins it, and writes every other
record back to the retry topic as ``waiting`` (no attempt spent). The probe's success resumes
the destination for every worker; a destination failing past the disable window gets the
health ``disabled`` and is parked like a gone one. Breaker updates after a send are best effort
(a Redis error loses one count, never re-sends the batch). The breaker code is kept in its own
section of the engine (``_breaker_*``), apart from the lanes, claims and commit.

The contract is decoded once: a lane turns each item's Avro bytes into the JSON dict and,
by the writer schema's contract family, into the kit's typed record
(:mod:`connectors.base.contract`), and hands both to the sink on the
:class:`~connectors.base.sink.OutboundRecord` (``record`` and ``payload``); the item keeps its
bytes, so a retry decodes them again. Bytes that do not decode are dead-lettered
(``ContractDecodingError``). A record that decodes but fails its model is not sent: the
sink's :meth:`~connectors.base.sink.BaseSink.contract_error` names its error (a partner
connector gives the permanent error its own parsing gave before), which is that record's
attempted failure, so it is dead-lettered at once with the offending fields as its reason
while the rest of the batch is sent; a connector that sends the JSON as it is (the signed
webhook) declines and the record is sent.

Waits are bounded and budgeted. A partner's wait hint reaches the engine already bounded
(``Retry-After`` and reset headers at most one hour, a spent quota at most a day: see
:mod:`connectors.base.errors`), and the engine bounds every delay again before using it, so
no answer (``Retry-After: 1e308``, ``inf``, ``1e9``) can raise in a lane or push a record
decades away. Every wait a record is given, a retry, a deferral (full lane, paused
connection, global throttle), a park or a quota wait, counts against its age budget
(``retry_timeout_seconds`` from its first attempt or first deferral): a wait that would end
after the budget dead-letters the record at once, with its error history. Deferrals and
parks spend no attempt, so the age budget is what ends them.

Where the pieces are: a destination's queues and cached connection and sink are a
:class:`~processors.deliveries.lanes.Lane`; what a failed attempt becomes is the pure outcome
table in :mod:`processors.deliveries.outcomes`; the retry, dead-letter and delivery records an
outcome writes are built in :mod:`processors.deliveries.outputs`; delivery records are indexed
for the API by :mod:`processors.deliveries.indexing`; the claim protocol is in
:mod:`processors.deliveries.state`. This module holds the lane tasks, the claims and sending,
and the commit that writes a batch's outputs in order.

Delivery modes: the webhook engine also delivers the webhook copies of partner connections
(a CRM connection in delivery mode ``webhook`` or ``both`` also pushes the contract to the
tenant's own signed endpoint). A lane is one *destination*: a
connection as delivered by this engine's connector, keyed by
:func:`~processors.deliveries.envelope.destination_key` (the bare ``connection_id`` for the
connection's own connector, ``{connection_id}:webhook`` for a partner connection's webhook
copy). The lane loads the record of the connector named in ``qi.owner_connector`` (same
``connection_id`` check as always) and builds the sink from it; the webhook sink reads the
connection's ``webhook`` block. Connection health is stored under the same destination key,
so a partner's 401 (``needs_reauth``) parks that partner's copies only, and a webhook endpoint
that is gone parks the webhook copies only; the stale-version guard is per destination too
(:attr:`~processors.deliveries.envelope.DeliveryItem.version_field`). A record whose
destination the connection's delivery mode no longer includes (``both`` changed to ``api``,
say) is dead-lettered, like a record of a removed connection: the tenant asked for it not to
be sent there, and a redrive can still send it.

Held for review: a record whose entity matched ambiguously (``HeldForReviewError``) is written
to the held store (:mod:`processors.identity.held`: its value, envelope and source position,
under the review it waits for) before it is acknowledged, and its delivery record says
``held_for_review``. A review decision releases it (:mod:`processors.operations.release`); a
held record older than its age budget is dead-lettered with reason ``review_timeout``, by
:meth:`DeliveryEngine.sweep_held` (a task of the engine, a quarter of the budget apart) or at
once if it is held again that late. Holding rather than re-scheduling the record to the retry
topic means no partner lookup is spent on it every few minutes while a human decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from connectors.base import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BaseSink,
    BatchOutcome,
    ConnectorError,
    OutboundRecord,
    RecordFailure,
    TransientError,
    bounded_wait,
)
from processors import metrics
from processors.contracts import ContractError, ContractRegistry, decode, to_json_dict
from processors.deliveries.breaker import Breaker, BreakerPolicy, Transition, disabled_reason
from processors.deliveries.envelope import DeliveryItem, destination_key, item_from_record
from processors.deliveries.indexing import RecordIndexer
from processors.deliveries.lanes import Lane, LaneQueue, defer_delay, new_lane
from processors.deliveries.models import AttemptError, DeliveryStatus
from processors.deliveries.outbound import outbound_record
from processors.deliveries.outcomes import DeadLetter, Hold, failure_outcome
from processors.deliveries.outputs import Ack, OutcomeWriter, Outputs, now_dt
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.state import (
    ClaimResult,
    ConnectionHealth,
    ConnectionState,
    DeliveryStateRepository,
)
from processors.deliveries.throttle import GlobalThrottle
from processors.identity.held import HeldRecord, HeldStore, HeldSubject
from processors.routing.destinations import export_destinations
from processors.routing.service import OutgoingRecord
from processors.settings import DeliverySettings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

__all__ = [
    "DeliveryEngine",
    "RecordProducer",
    "SinkFactory",
]

logger = logging.getLogger(__name__)

RecordProducer = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]
SinkFactory = Callable[[ConnectionRecord], Awaitable[BaseSink[Any]]]
"""Builds and sets up the sink of a connection; raises ``ConnectorError`` when it cannot."""

_T = TypeVar("_T")

_CONNECTION_CACHE_SECONDS = 5.0
_FIRST_COMMIT_BACKOFF = 0.5
_MAX_COMMIT_BACKOFF = 30.0


_SLOW_DOWN_STATUSES = frozenset({429, 503})


class DeliveryEngine:
    """Lanes, outcomes and bookkeeping for one connector in one worker."""

    def __init__(
        self,
        *,
        connector: str,
        max_batch_size: int,
        topics: TopicMap,
        settings: DeliverySettings,
        state: DeliveryStateRepository,
        connections: ConnectionRepository,
        records: DeliveryRecordIndex,
        produce: RecordProducer,
        sink_factory: SinkFactory,
        throttle: GlobalThrottle,
        policy: RetryPolicy,
        registry: ContractRegistry,
        clock: Callable[[], float] = time.time,
        held: HeldStore | None = None,
    ) -> None:
        self._connector = connector
        self._max_batch = max_batch_size
        self._topics = topics
        self._settings = settings
        self._state = state
        self._connections = connections
        self._produce = produce
        self._sink_factory = sink_factory
        self._throttle = throttle
        self._policy = policy
        self._registry = registry
        self._clock = clock
        self._out = OutcomeWriter(connector=connector, topics=topics, settings=settings)
        self._lanes: dict[str, Lane] = {}
        self._closed = False
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex}"
        """This engine's claim owner id: unique per process start, so a restarted worker
        never mistakes a dead predecessor's claims for its own."""
        self._indexer = RecordIndexer(records)
        self._breaker_policy = BreakerPolicy.from_settings(settings)
        self._held = held
        self._held_sweeper: asyncio.Task[None] | None = None

    # -- intake ---------------------------------------------------------------------------

    async def submit(self, item: DeliveryItem, ack: Ack) -> None:
        """Queue ``item`` on its connection's lane, or defer it when the lane is full.

        Returns at once in the common case; a deferral waits for its retry record to be
        written (one produce), never for a partner.
        """
        lane = self._lane(item)
        queue = lane.queue_for(item)
        try:
            queue.put_nowait((item, ack))
        except asyncio.QueueFull:
            metrics.RATE_LIMIT_WAITS.labels(self._connector, "lane_full").inc()
            outputs = Outputs()
            delay = defer_delay(queue, self._settings)
            self._out.reschedule(
                outputs, item, ack, kind="deferred", delay=delay, now=self._clock()
            )
            await self._commit_until_written(outputs, connection_id=item.connection_id)
        metrics.LANE_DEPTH.labels(self._connector).set(self.queued())

    async def requeue(self, held: Sequence[tuple[DeliveryItem, Ack]]) -> None:
        """Write retry records that are not due yet back to the retry topic, then acknowledge.

        The retry agent calls this for records it has held in memory as long as it holds any
        (see :mod:`processors.agents.deliver`), so their offsets do not pin the retry topic's
        committed offset. Each copy is the same delivery, with the same ``not_before``,
        attempt count, first attempt and history, as the next hop (so the held copy, should
        it be read again after a crash, is dropped as a leftover). It is not an outcome: no
        delivery record is written. A held copy that is itself a leftover is only
        acknowledged. One Redis round trip and one produce for the lot; raises if Redis or
        Kafka fail, and nothing is acknowledged then.
        """
        if not held:
            return
        states = await self._state.load([item for item, _ in held])
        outputs = Outputs(acks=[ack for _, ack in held])
        now_ms = int(self._clock() * 1000)
        for (item, _ack), state in zip(held, states, strict=True):
            if item.hop < state.newest_hop:
                continue
            self._out.next_hop(
                outputs,
                item,
                kind=item.headers.get("qi.retry.kind") or "retry",
                attempts_made=item.attempts_made,
                not_before_ms=item.not_before_ms,
                now_ms=now_ms,
            )
        await self._commit(outputs)
        metrics.RETRIES_SCHEDULED.labels(self._connector, "requeued").inc(len(outputs.hops))

    def queued(self) -> int:
        return sum(lane.queued() for lane in self._lanes.values())

    def drop_partitions(self, revoked: Collection[tuple[str, int]]) -> int:
        """Drop every queued item read from a partition in ``revoked``, without acknowledging.

        Called when the worker's partitions are revoked in a rebalance (see
        :mod:`processors.agents.deliver`): the partition's next owner, which may be this
        worker again, re-reads those records from the committed offset, which an item never
        acknowledged cannot have passed. Only items waiting in a lane queue are dropped; a
        batch a lane task has already taken (claiming, waiting for room, at the partner)
        finishes and writes its outcome as usual. Returns how many items were dropped.
        """
        gone = set(revoked)
        dropped = sum(lane.drop_partitions(gone) for lane in self._lanes.values())
        metrics.LANE_DEPTH.labels(self._connector).set(self.queued())
        return dropped

    def _lane(self, item: DeliveryItem) -> Lane:
        lane = self._lanes.get(item.destination_key)
        if lane is None:
            lane = new_lane(
                item,
                connector=self._connector,
                settings=self._settings,
                max_batch_size=self._max_batch,
            )
            lane.tasks = [
                asyncio.create_task(self._serve(lane, queue), name=f"lane-{lane.key}-{n}")
                for n, queue in enumerate(lane.queues)
            ]
            self._lanes[lane.key] = lane
            self.start_held_sweeper()
        return lane

    async def flush_index(self) -> None:
        """Index every delivery record written so far now (shutdown, tests)."""
        await self._indexer.flush()

    async def close(self) -> None:
        """Stop the lanes (items in flight are not acknowledged) and close the sinks."""
        self._closed = True
        for lane in self._lanes.values():
            self._hold_breaker(lane, Breaker())
            for task in lane.tasks:
                task.cancel()
            for task in lane.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if lane.sink is not None:
                await lane.sink.close()
        self._lanes.clear()
        await self._stop_held_sweeper()
        await self._indexer.close()

    # -- the lane loop ----------------------------------------------------------------------

    async def _serve(self, lane: Lane, queue: LaneQueue) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._process_until_written(lane, batch)
            metrics.LANE_DEPTH.labels(self._connector).set(self.queued())

    async def _process_until_written(
        self, lane: Lane, batch: list[tuple[DeliveryItem, Ack]]
    ) -> None:
        """Process a batch; if Redis or Kafka fail, try again (nothing is acknowledged).

        Processing is retried until it returns; its outputs are then written until written,
        without processing (and calling the partner) again.
        """
        outputs = await self._until_done(
            functools.partial(self._process, lane, batch),
            step="delivery.batch",
            connection_id=lane.connection_id,
        )
        await self._commit_until_written(outputs, connection_id=lane.connection_id)

    async def _process(self, lane: Lane, batch: list[tuple[DeliveryItem, Ack]]) -> Outputs:
        outputs = Outputs()
        now = self._clock()
        lease = self._settings.claim_lease_seconds
        items = [item for item, _ in batch]
        claims = await self._state.claim(items, owner=self._owner, lease_seconds=lease)
        sendable: list[tuple[DeliveryItem, Ack]] = []
        sending: set[str] = set()
        for (item, ack), claim in zip(batch, claims, strict=True):
            if claim.result is ClaimResult.LEFTOVER:
                outputs.acks.append(ack)  # a leftover copy: a newer hop exists
                continue
            if claim.result is ClaimResult.CLAIMED:
                outputs.claimed.append(item)
            if claim.result is ClaimResult.DELIVERED:
                self._out.record(outputs, item, DeliveryStatus.DUPLICATE_SKIPPED, now, now)
                outputs.acks.append(ack)
            elif claim.result is ClaimResult.STALE:
                self._out.record(outputs, item, DeliveryStatus.STALE_SKIPPED, now, now)
                outputs.acks.append(ack)
            elif claim.result is ClaimResult.BUSY or item.idempotency_key in sending:
                # Another worker sends this entity now (or this batch holds the key twice,
                # after a partition came back): defer; the outcome decides it later.
                metrics.RATE_LIMIT_WAITS.labels(self._connector, "claimed").inc()
                self._out.reschedule(
                    outputs,
                    item,
                    ack,
                    kind="deferred",
                    delay=self._claim_wait(item, claim.lease_left_ms),
                    now=now,
                )
            else:
                sending.add(item.idempotency_key)
                sendable.append((item, ack))
        if sendable:
            renewing = asyncio.create_task(
                self._renew_claims(outputs.claimed, lease), name=f"claims-{lane.key}"
            )
            try:
                await self._send(lane, sendable, outputs, now)
            finally:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        return outputs

    def _claim_wait(self, item: DeliveryItem, lease_left_ms: int | None) -> float:
        """How long an item waits for another engine's claim.

        Doubling from ``defer_min_seconds`` with each hop (a live holder releases within one
        request), never past the holder's remaining lease (a dead holder's claim is free
        then) nor ``defer_max_seconds``.
        """
        floor = self._settings.defer_min_seconds
        backoff = floor * (1 << min(item.hop, 6))
        left = (lease_left_ms or 0) / 1000
        return max(floor, min(backoff, left, self._settings.defer_max_seconds))

    async def _renew_claims(self, items: list[DeliveryItem], lease: float) -> None:
        """Keep this batch's leases alive while it waits for room and for the partner."""
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self._state.renew(items, owner=self._owner, lease_seconds=lease)
            except Exception as exc:  # Redis blip: the next round tries again
                logger.warning(
                    "delivery.claim.renew_failed",
                    extra={"connector": self._connector, "error": type(exc).__name__},
                )

    async def _wait_for_room(
        self,
        lane: Lane,
        items: list[tuple[DeliveryItem, Ack]],
        outputs: Outputs,
        now: float,
    ) -> bool:
        """Wait out the destination's pause and the global throttle, or defer ``items``.

        Short waits are slept in the lane (only this connection waits); a wait longer than
        ``max_rate_limit_wait_seconds`` defers the items to the retry topic, no attempt spent,
        and returns False.
        """
        pause = lane.paused_until - now
        if pause > 0 and not await self._wait_or_defer("destination", pause, items, outputs, now):
            return False
        wait = await self._throttle.acquire(len(items))
        return wait <= 0 or await self._wait_or_defer("global", wait, items, outputs, now)

    async def _wait_or_defer(
        self,
        scope: str,
        seconds: float,
        items: list[tuple[DeliveryItem, Ack]],
        outputs: Outputs,
        now: float,
    ) -> bool:
        metrics.RATE_LIMIT_WAITS.labels(self._connector, scope).inc()
        if seconds > self._settings.max_rate_limit_wait_seconds:
            for item, ack in items:
                self._out.reschedule(outputs, item, ack, kind="deferred", delay=seconds, now=now)
            return False
        await asyncio.sleep(seconds)
        return True

    async def _send(
        self,
        lane: Lane,
        items: list[tuple[DeliveryItem, Ack]],
        outputs: Outputs,
        now: float,
    ) -> None:
        connection = await self._connection(lane, now)
        if connection is None:
            error = AttemptError(
                attempt=0,
                at=now_dt(now),
                error_class="ConnectionRemoved",
                reason="the connection no longer exists",
            )
            for item, ack in items:
                self._out.dead_letter(outputs, item, ack, error, now)
            return
        if Connector(self._connector) not in export_destinations(connection):
            error = AttemptError(
                attempt=0,
                at=now_dt(now),
                error_class="DestinationRemoved",
                reason=f"the connection's delivery mode no longer includes {self._connector}",
            )
            for item, ack in items:
                self._out.dead_letter(outputs, item, ack, error, now)
            return
        if not connection.enabled:
            for item, ack in items:
                self._out.park_or_expire(outputs, item, ack, now, reason="connection disabled")
            return
        health = lane.health
        if health is not None and health.since >= connection.updated_at.timestamp():
            for item, ack in items:
                self._out.park_or_expire(outputs, item, ack, now, reason=health.health.value)
            return
        items, probe = await self._breaker_gate(lane, connection, items, outputs, now)
        if not items:
            return
        if not await self._wait_for_room(lane, items, outputs, now):
            return
        try:
            sink = await self._sink(lane, connection)
        except ConnectorError as exc:
            await self._connection_failed(outputs, connection, items, exc, now)
            return
        outbound, refused = self._decode(items, sink, outputs, now)
        if not outbound:
            return
        started = self._clock()
        records = [record for _, _, record in outbound if record.delivery_id not in refused]
        try:
            outcome = await sink.deliver(records) if records else BatchOutcome()
        except Exception as exc:  # a connector bug: the records retry within their budget
            logger.exception(
                "delivery.sink.crashed",
                extra={"connector": self._connector, "connection_id": lane.connection_id},
            )
            crash = TransientError(
                f"connector failed: {type(exc).__name__}", partner=self._connector
            )
            outcome = BatchOutcome(
                failed=tuple(RecordFailure(r.delivery_id, crash) for r in records)
            )
        finished = self._clock()
        metrics.ATTEMPT_SECONDS.labels(self._connector).observe(finished - started)
        delivered = {result.delivery_id: result for result in outcome.delivered}
        failed = {failure.delivery_id: failure for failure in outcome.failed} | refused
        lane.paused_until = max(lane.paused_until, _asked_to_wait_until(outcome, finished))
        for item, ack, _record in outbound:
            result = delivered.get(item.delivery_id)
            if result is not None:
                outputs.delivered.append(item)
                outputs.acks.append(ack)
                self._out.record(
                    outputs,
                    item,
                    DeliveryStatus.DELIVERED,
                    started,
                    finished,
                    attempt=item.attempts_made + 1,
                    status_code=result.status_code,
                )
                metrics.DELIVERIES.labels(self._connector, "delivered").inc()
                continue
            failure = failed.get(item.delivery_id)
            if failure is None:  # the sink owes every record an outcome; treat as transient
                failure = RecordFailure(
                    item.delivery_id, _missing_outcome(self._connector), attempted=False
                )
            await self._failed(
                outputs, connection, item, ack, failure, started=started, finished=finished
            )
        await self._breaker_outcome(lane, connection, outcome, probe=probe, now=finished)

    # -- outcomes -----------------------------------------------------------------------------

    async def _failed(
        self,
        outputs: Outputs,
        connection: ConnectionRecord,
        item: DeliveryItem,
        ack: Ack,
        failure: RecordFailure,
        *,
        started: float,
        finished: float,
    ) -> None:
        """Carry out the outcome table's decision (:func:`failure_outcome`) for one failure."""
        error = failure.error
        if failure.attempted:
            if error.status_code == 429:
                metrics.PARTNER_429.labels(self._connector).inc()
            if item.first_attempt_at_ms is None:
                item.first_attempt_at_ms = int(started * 1000)
            metrics.DELIVERIES.labels(self._connector, type(error).__name__).inc()
        outcome = failure_outcome(
            error,
            attempted=failure.attempted,
            attempts_made=item.attempts_made,
            first_attempt_at=(item.first_attempt_at_ms or int(started * 1000)) / 1000,
            now=finished,
            policy=self._policy,
            defer_seconds=self._settings.defer_min_seconds,
            park_recheck_seconds=self._settings.park_recheck_seconds,
        )
        if outcome.history is not None:
            item.errors.append(outcome.history)
        if outcome.wait_scope is not None:
            metrics.RATE_LIMIT_WAITS.labels(self._connector, outcome.wait_scope).inc()
        if outcome.mark is not None:
            await self._mark_connection(connection, outcome.mark, error, finished)
        step = outcome.step
        if isinstance(step, Hold):
            await self._hold(outputs, item, ack, step, started=started, finished=finished)
        elif isinstance(step, DeadLetter):
            self._out.dead_letter(
                outputs, item, ack, step.error, finished, attempt=step.attempts_made
            )
        else:
            self._out.reschedule(
                outputs,
                item,
                ack,
                kind=step.kind,
                delay=step.delay,
                now=finished,
                attempts_made=step.attempts_made,
                last_error=step.last_error,
            )

    # -- records held for a match review (see processors.identity.held) ----------------------

    async def _hold(
        self,
        outputs: Outputs,
        item: DeliveryItem,
        ack: Ack,
        step: Hold,
        *,
        started: float,
        finished: float,
    ) -> None:
        """Hold ``item`` for its match review, or dead-letter it (``review_timeout``) when it
        is older than its age budget.

        The held record (value, envelope, source position) is written to the held store
        before the item is acknowledged, tried again like any outcome while Redis fails, so
        a decision can release it (:mod:`processors.operations.release`); its age counts from
        its first attempt, as every wait's does. The delivery record says
        ``held_for_review``.
        """
        first_ms = item.first_attempt_at_ms or int(started * 1000)
        if finished - first_ms / 1000 > self._policy.timeout_seconds:
            error = _review_timeout(step.error.attempt, finished, self._policy.timeout_seconds)
            self._out.dead_letter(outputs, item, ack, error, finished, attempt=step.attempts_made)
            return
        if self._held is not None:
            record = HeldRecord.of(
                subject=self._held_subject(item, step.error.reason),
                value=item.value,
                headers=item.headers,
                topic=item.source_topic,
                partition=item.source_partition,
                offset=item.source_offset,
                held_at_ms=first_ms,
            )
            await self._until_done(
                functools.partial(self._held.hold, record),
                step="delivery.hold",
                connection_id=item.connection_id,
            )
            self.start_held_sweeper()
        outputs.acks.append(ack)
        self._out.record(
            outputs,
            item,
            DeliveryStatus.HELD_FOR_REVIEW,
            started,
            finished,
            attempt=step.attempts_made,
            last_error=step.error,
        )

    def _held_subject(self, item: DeliveryItem, reason: str) -> HeldSubject:
        """The review ``item`` waits for: the review named in the error (``(review
        company:co_1)``), else its own entity for a company or person, else the company a
        signal or job ad is about, else its own entity (released by nothing but its age)."""
        named = _REVIEW_IN_REASON.search(reason)
        if named is not None:
            return HeldSubject(item.connection_id, named["kind"], named["queast_id"])
        family = item.headers["qi.contract"]
        if family not in _ENTITY_FAMILIES:
            try:
                _schema, contract = decode(item.value, registry=self._registry)
                company_id = to_json_dict(contract).get("company_id")
            except ContractError:
                company_id = None
            if isinstance(company_id, str) and company_id:
                return HeldSubject(item.connection_id, "company", company_id)
        return HeldSubject(item.connection_id, family, item.headers["qi.entity_id"])

    def start_held_sweeper(self) -> None:
        """Start sweeping held records for ``review_timeout`` (once; the worker calls it when
        it builds the engine, and a lane or a hold starts it too)."""
        if self._held is None or self._held_sweeper is not None or self._closed:
            return
        self._held_sweeper = asyncio.create_task(
            self._sweep_held_forever(), name=f"held-sweep-{self._connector}"
        )

    async def _stop_held_sweeper(self) -> None:
        sweeper, self._held_sweeper = self._held_sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_held_forever(self) -> None:
        """Sweep the held records a quarter of the age budget apart (0.5 s to a minute)."""
        interval = min(max(self._policy.timeout_seconds / 4, 0.5), 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_held()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or Kafka: the next sweep tries again
                logger.warning(
                    "delivery.held.sweep_failed",
                    extra={"connector": self._connector, "error": type(exc).__name__},
                )

    async def sweep_held(self) -> int:
        """Dead-letter (``review_timeout``) the records of this connector held longer than
        the age budget; returns how many.

        Each entity's expired records are taken from the store atomically (a decision made
        at that moment releases the others, never these), then dead-lettered with their
        delivery records like any outcome.
        """
        if self._held is None:
            return 0
        now = self._clock()
        cutoff = int((now - self._policy.timeout_seconds) * 1000)
        swept = 0
        for subject in await self._held.due(self._connector, older_than_ms=cutoff):
            expired = await self._held.expire(
                subject, connector=self._connector, older_than_ms=cutoff
            )
            outputs = Outputs()
            for record in expired:
                try:
                    item = item_from_record(
                        value=record.value,
                        headers=record.headers,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                except ValueError:
                    logger.warning(
                        "delivery.held.unreadable",
                        extra={"connector": self._connector, "tenant_id": record.tenant_id},
                    )
                    continue
                error = _review_timeout(item.attempts_made, now, self._policy.timeout_seconds)
                self._out.dead_letter(outputs, item, _no_ack, error, now)
                swept += 1
            await self._commit_until_written(outputs, connection_id=subject.connection_id)
        return swept

    async def _connection_failed(
        self,
        outputs: Outputs,
        connection: ConnectionRecord,
        items: list[tuple[DeliveryItem, Ack]],
        exc: ConnectorError,
        now: float,
    ) -> None:
        """The sink could not be set up: the connection's configuration is at fault."""
        health = (
            ConnectionHealth.NEEDS_REAUTH
            if isinstance(exc, AuthenticationError)
            else ConnectionHealth.GONE
        )
        await self._mark_connection(connection, health, exc, now)
        for item, ack in items:
            self._out.park_or_expire(outputs, item, ack, now, reason=health.value)

    async def _mark_connection(
        self,
        connection: ConnectionRecord,
        health: ConnectionHealth,
        error: ConnectorError,
        now: float,
    ) -> None:
        key = self._destination_key(connection)
        await self._state.set_connection_state(key, health, reason=error.reason, since=now)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.health = ConnectionState(health, error.reason, now)
        metrics.CONNECTIONS_PARKED.labels(self._connector, health.value).inc()
        metrics.CONNECTION_STATE_CHANGES.labels(self._connector, _shown_state(health)).inc()
        logger.warning(
            "connection.parked",
            extra={
                "tenant_id": connection.tenant_id,
                "connection_id": connection.connection_id,
                "connector": self._connector,
                "owner_connector": connection.connector.value,
                "state": health.value,
                "reason": error.reason,
            },
        )

    async def _commit_until_written(self, outputs: Outputs, *, connection_id: str) -> None:
        """:meth:`_commit`, tried again with capped backoff until it succeeds."""
        await self._until_done(
            functools.partial(self._commit, outputs),
            step="delivery.commit",
            connection_id=connection_id,
        )

    async def _until_done(
        self, action: Callable[[], Awaitable[_T]], *, step: str, connection_id: str
    ) -> _T:
        """Run ``action`` until it returns, after a Redis or Kafka error with capped backoff.

        Nothing is acknowledged while it fails. Each failed try is logged as
        ``{step}.retrying`` and counted in ``qi_backend_retries_total{component=step}``.
        """
        backoff = _FIRST_COMMIT_BACKOFF
        while True:
            try:
                return await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis, Kafka: nothing is acknowledged yet
                metrics.BACKEND_RETRIES.labels(step, type(exc).__name__).inc()
                logger.warning(
                    f"{step}.retrying",
                    extra={
                        "connector": self._connector,
                        "connection_id": connection_id,
                        "error": type(exc).__name__,
                        "backoff_s": backoff,
                    },
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_COMMIT_BACKOFF)

    async def _commit(self, outputs: Outputs) -> None:
        """Write everything the batch decided, then acknowledge its items.

        Each step is cleared from ``outputs`` once written, so a call after a failure resumes
        at the step that failed instead of writing the earlier ones twice.
        """
        if outputs.delivered:
            await self._state.mark_delivered(outputs.delivered)
            outputs.delivered = []
        if outputs.produce:
            await self._produce(outputs.produce)
            outputs.produce = []
        if outputs.hops:
            await self._state.record_hops(outputs.hops)
            outputs.hops = []
        for ack in outputs.acks:
            ack()
        if outputs.records:
            self._indexer.add(outputs.records)
        if outputs.claimed:  # last: the next claimant must see the outcomes written above
            await self._release_claims(outputs.claimed)

    async def _release_claims(self, items: list[DeliveryItem]) -> None:
        """Release after the outcomes are written; a failure leaves the lease to expire."""
        try:
            await self._state.release(items, owner=self._owner)
        except Exception as exc:  # the outcome is written; the lease only delays others
            logger.warning(
                "delivery.claim.release_failed",
                extra={"connector": self._connector, "error": type(exc).__name__},
            )

    # -- the failing-destination breaker (see processors.deliveries.breaker) -------------------

    async def _breaker_gate(
        self,
        lane: Lane,
        connection: ConnectionRecord,
        items: list[tuple[DeliveryItem, Ack]],
        outputs: Outputs,
        now: float,
    ) -> tuple[list[tuple[DeliveryItem, Ack]], bool]:
        """The items a failing destination may send now, and whether they are its probe.

        A closed breaker sends everything. A failing one sends one item when this caller wins
        the probe (due, and taken atomically in Redis) and none otherwise; every other item
        waits on the retry topic, no attempt spent (:meth:`_wait_failing`).
        """
        breaker = lane.breaker
        if not breaker.failing:
            return items, False
        granted = False
        if now >= breaker.next_probe_at:
            breaker, granted = await self._state.breaker_probe(
                lane.key,
                now=now,
                updated_at=connection.updated_at.timestamp(),
                policy=self._breaker_policy,
            )
            self._hold_breaker(lane, breaker)
            if not breaker.failing:  # resumed by another worker, or the connection saved
                return items, False
        sending = items[:1] if granted else []
        for item, ack in items[len(sending) :]:
            self._wait_failing(outputs, item, ack, breaker, now)
        if granted:
            logger.info(
                "connection.probe",
                extra={
                    **self._lane_fields(lane),
                    "delivery_id": sending[0][0].delivery_id,
                    "probe_interval_s": breaker.probe_interval,
                },
            )
        return sending, granted

    def _wait_failing(
        self, outputs: Outputs, item: DeliveryItem, ack: Ack, breaker: Breaker, now: float
    ) -> None:
        """Write ``item`` back to the retry topic as ``waiting`` (no attempt spent).

        It comes back at the next probe, or after ``park_recheck_seconds`` if that is sooner,
        so it flows again soon after the destination resumes; the age budget keeps running.
        """
        if item.first_attempt_at_ms is None:
            item.first_attempt_at_ms = int(now * 1000)
        delay = min(breaker.next_probe_at - now, self._settings.park_recheck_seconds)
        waiting = AttemptError(
            attempt=item.attempts_made,
            at=now_dt(now),
            error_class="ConnectionFailing",
            reason=f"the destination is failing; last error: {breaker.last_error}"[:500],
        )
        self._out.reschedule(
            outputs,
            item,
            ack,
            kind="waiting",
            delay=max(delay, self._settings.defer_min_seconds),
            now=now,
            last_error=waiting,
        )

    async def _breaker_outcome(
        self,
        lane: Lane,
        connection: ConnectionRecord,
        outcome: BatchOutcome,
        *,
        probe: bool,
        now: float,
    ) -> None:
        """Count a batch's outcome into the destination's breaker (see :func:`_breaker_signal`).

        Best effort: the outcome of every record is decided already, and a Redis error here
        only loses one count (logged as ``delivery.breaker.update_failed``), so it never
        makes the batch run, and call the partner, again.
        """
        delivered, transient = _breaker_signal(outcome)
        updated_at = connection.updated_at.timestamp()
        try:
            if delivered:
                if not (lane.breaker.counting or probe):
                    return
                transition = await self._state.breaker_succeeded(
                    lane.key, updated_at=updated_at, policy=self._breaker_policy
                )
                breaker = Breaker()
            elif transient is not None:
                breaker, transition = await self._state.breaker_failed(
                    lane.key,
                    now=now,
                    reason=transient.reason,
                    probe=probe,
                    updated_at=updated_at,
                    policy=self._breaker_policy,
                )
            else:
                return
        except Exception as exc:  # Redis: the records' outcomes do not depend on it
            logger.warning(
                "delivery.breaker.update_failed",
                extra={
                    "connector": self._connector,
                    "connection_id": lane.connection_id,
                    "error": type(exc).__name__,
                },
            )
            return
        self._breaker_changed(lane, breaker, transition, now)

    def _breaker_changed(
        self, lane: Lane, breaker: Breaker, transition: Transition, now: float
    ) -> None:
        """Keep the lane's copy of ``breaker``; log and count a state change this worker
        made. A disabled destination parks (its health, as stored with the change)."""
        reason = breaker.last_error
        if transition is Transition.DISABLED:
            reason = disabled_reason(breaker, policy=self._breaker_policy)
            lane.health = ConnectionState(ConnectionHealth.DISABLED, reason, now)
            breaker = Breaker()
        self._hold_breaker(lane, breaker)
        if transition is Transition.NONE:
            return
        metrics.CONNECTION_STATE_CHANGES.labels(self._connector, transition.value).inc()
        log = logger.info if transition is Transition.RESUMED else logger.warning
        log(
            f"connection.{'resumed' if transition is Transition.RESUMED else transition.value}",
            extra={
                **self._lane_fields(lane),
                "destination": lane.key,
                "state": transition.value,
                "reason": reason,
            },
        )

    def _lane_fields(self, lane: Lane) -> dict[str, str]:
        """The log fields that name a lane's connection (ids only)."""
        return {
            "tenant_id": lane.tenant_id,
            "connection_id": lane.connection_id,
            "connector": self._connector,
        }

    async def _load_breaker(self, lane: Lane, connection: ConnectionRecord | None) -> None:
        """Refresh the lane's copy of its breaker (with the connection, every few seconds):
        another worker may have tripped or resumed it. A run older than the connection's last
        save is over."""
        breaker = Breaker() if connection is None else await self._state.breaker(lane.key)
        if connection is not None and breaker.older_than(connection.updated_at.timestamp()):
            breaker = Breaker()
        self._hold_breaker(lane, breaker)

    def _hold_breaker(self, lane: Lane, breaker: Breaker) -> None:
        """Replace the lane's copy of its breaker, keeping ``qi_connections_failing`` (the
        destinations this worker holds as failing) in step."""
        if breaker.failing != lane.breaker.failing:
            gauge = metrics.CONNECTIONS_FAILING.labels(self._connector)
            if breaker.failing:
                gauge.inc()
            else:
                gauge.dec()
        lane.breaker = breaker

    # -- connections and sinks ----------------------------------------------------------------

    def _destination_key(self, connection: ConnectionRecord) -> str:
        return destination_key(
            connection.connection_id,
            owner_connector=connection.connector.value,
            connector=self._connector,
        )

    async def _connection(self, lane: Lane, now: float) -> ConnectionRecord | None:
        """The connection record that owns the lane's exports (cached a few seconds).

        A partner connection's webhook copy loads the partner's record (``lane.owner``), and
        the lane's health is that of its destination key, not of the partner copy.
        """
        if now - lane.connection_loaded_at > _CONNECTION_CACHE_SECONDS:
            current = await self._connections.get(lane.tenant_id, lane.owner)
            # A connection deleted and created again is another connection: its exports differ.
            same = current is not None and current.connection_id == lane.connection_id
            lane.connection = current if same else None
            lane.health = await self._state.connection_state(lane.key) if same else None
            await self._load_breaker(lane, current if same else None)
            lane.connection_loaded_at = now
        return lane.connection

    async def _sink(self, lane: Lane, connection: ConnectionRecord) -> BaseSink[Any]:
        async with lane.sink_lock:
            if lane.sink is not None and lane.sink_version == connection.updated_at:
                return lane.sink
            if lane.sink is not None:
                await lane.sink.close()
                lane.sink = None
            lane.sink = await self._sink_factory(connection)
            lane.sink_version = connection.updated_at
            return lane.sink

    def _decode(
        self,
        items: list[tuple[DeliveryItem, Ack]],
        sink: BaseSink[Any],
        outputs: Outputs,
        now: float,
    ) -> tuple[list[tuple[DeliveryItem, Ack, OutboundRecord]], dict[str, RecordFailure]]:
        """Decode each item once (:meth:`_outbound`); bytes that do not decode are
        dead-lettered here. Returns the records and the failures of those the sink refuses
        for failing their contract model (not sent; see the module doc)."""
        outbound: list[tuple[DeliveryItem, Ack, OutboundRecord]] = []
        refused: dict[str, RecordFailure] = {}
        for item, ack in items:
            try:
                record, refusal = self._outbound(item, sink)
            except ContractError as exc:
                error = AttemptError(
                    attempt=item.attempts_made,
                    at=now_dt(now),
                    error_class="ContractDecodingError",
                    reason=str(exc)[:500],
                )
                self._out.dead_letter(outputs, item, ack, error, now)
                continue
            outbound.append((item, ack, record))
            if refusal is not None:
                refused[item.delivery_id] = RecordFailure(item.delivery_id, refusal)
        return outbound, refused

    def _outbound(
        self, item: DeliveryItem, sink: BaseSink[Any]
    ) -> tuple[OutboundRecord, ConnectorError | None]:
        """The item as the sink receives it, decoded once into its typed contract record.

        Returns the record and, for a record whose payload fails its contract model, the
        sink's error for it (``None``: send it). Raises ``ContractError`` for bytes that do
        not decode. See :mod:`processors.deliveries.outbound`.
        """
        schema, contract = decode(item.value, registry=self._registry)
        record, refusal = outbound_record(
            item,
            connector=self._connector,
            family=schema.family,
            payload=to_json_dict(contract),
            sink=sink,
        )
        if refusal is None:
            return record, None
        violation, error = refusal
        logger.warning(
            "delivery.contract.refused",
            extra={**record.log_fields(), "fields": list(violation.fields[:10])},
        )
        return record, error


def _asked_to_wait_until(outcome: BatchOutcome, now: float) -> float:
    """When a 429 or 503 with a wait hint lets the connection send again (0: no hint).

    Every other record of the connection would get the same answer before then, so the lane
    holds them (short waits) or defers them without an attempt (long ones) instead of
    spending requests, retries and the partner's patience on them. A pause is at most
    :data:`~connectors.base.MAX_RETRY_AFTER_SECONDS` (one hour), whatever the partner asked.
    """
    waits = [
        bounded_wait(failure.error.retry_after, maximum=MAX_RETRY_AFTER_SECONDS) or 0.0
        for failure in outcome.failed
        if failure.attempted
        and isinstance(failure.error, TransientError)
        and failure.error.status_code in _SLOW_DOWN_STATUSES
        and failure.error.retry_after
    ]
    return now + max(waits) if waits else 0.0


def _breaker_signal(outcome: BatchOutcome) -> tuple[bool, ConnectorError | None]:
    """What a batch tells the breaker: whether anything was delivered, else the error of a
    batch whose every attempted record failed transiently (None: it does not count)."""
    if outcome.delivered:
        return True, None
    attempted = [failure.error for failure in outcome.failed if failure.attempted]
    if attempted and all(isinstance(error, TransientError) for error in attempted):
        return False, attempted[-1]
    return False, None


def _shown_state(health: ConnectionHealth) -> str:
    """The connections API's state of a destination health (``gone`` shows as ``parked``)."""
    return "parked" if health is ConnectionHealth.GONE else health.value


_REVIEW_IN_REASON = re.compile(r"\(review (?P<kind>company|person):(?P<queast_id>[^)\s]+)\)")
"""The review a partner's ``HeldForReviewError`` names in its reason, when it names one."""

_ENTITY_FAMILIES = frozenset({"company", "person"})


def _review_timeout(attempt: int, now: float, budget: float) -> AttemptError:
    return AttemptError(
        attempt=attempt,
        at=now_dt(now),
        error_class="ReviewTimeout",
        reason=f"review_timeout: no review decision within the retry budget ({budget:.0f}s)",
    )


def _no_ack() -> None:
    """A swept held record was acknowledged when it was held."""


def _missing_outcome(connector: str) -> ConnectorError:
    return TransientError("the sink returned no outcome for the record", partner=connector)
