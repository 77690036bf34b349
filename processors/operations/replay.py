"""Replay: deliver one tenant's exported artifacts of one connector again, from history.

A replay reads ``integrations.exports.<C>`` on the tenant's partition between ``since`` and
``until`` (:class:`~processors.operations.history.HistoryReader`: no consumer group, nothing
committed, nothing written to the export topics) and puts a copy of each of the tenant's
artifacts on the connector's retry topic (:class:`~processors.operations.reinject.Reinjector`,
kind ``replay``). The worker delivers the copies through the normal lanes, limits and retries;
each copy keeps its idempotency key (a webhook receiver sees the same ``webhook-id``), carries
the run's id into its delivery records and webhook requests (``x-queast-replay-id``), and is
sent even if the key was delivered before; the stale-version guard still applies, so an
older version of an entity than the one a partner holds is skipped (counted ``skipped``).

What is read and what is kept:

- the window: ``until`` defaults to now and ``since`` to ``default_window_seconds`` before
  ``until``; both carry a time zone, ``since`` is before ``until``, and the window is at most
  ``max_window_seconds`` (31 days by default; :class:`~processors.settings.ReplaySettings`);
- the tenant's records are those keyed by its id; one keyed so whose ``qi.tenant_id`` or
  ``qi.connector`` header disagrees, or that lacks the delivery envelope or a value, is not sent
  and is counted ``malformed`` (logged ``replay.record.malformed`` with its offset);
- ``event_types``, if given, keep the records of those types;
- an artifact read twice in the window (a router that exported it twice after a crash) is sent
  once: ``matched`` counts distinct idempotency keys, ``duplicates`` the extra reads.

A dry run reads and counts the same way, sends nothing, and returns up to five sample payloads
(the decoded contract records as JSON, as a webhook body would carry them).

Runs are recorded in :class:`~processors.operations.runs.RunStore` (one active replay per
tenant and connector: a second is refused; cancel between batches; heartbeat). The service is
asynchronous (Redis); the blocking Kafka reading and producing run in a worker thread, a batch
at a time, so the API's event loop keeps serving while a run reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from confluent_kafka import KafkaException, Message

from connectors.registry import registered
from processors.auth import TENANT_ID_PATTERN
from processors.contracts import ContractError, decode, default_registry, to_json_dict
from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.domain.events import EventType
from processors.operations.errors import RunFailedError, RunInputError
from processors.operations.history import HistoryError, HistoryReader, record_headers
from processors.operations.reinject import ReinjectError, Reinjector
from processors.operations.run_service import RunService
from processors.operations.runs import RunRecord, RunStatus
from processors.routing.destinations import export_destinations
from processors.tenants.repository import ConnectionRepository

__all__ = [
    "KIND",
    "MAX_SAMPLES",
    "ReplayFailedError",
    "ReplayInputError",
    "ReplayOutcome",
    "ReplayRequest",
    "ReplayService",
]

logger = logging.getLogger(__name__)

KIND: Final = "replay"
MAX_SAMPLES: Final = 5
_BATCH: Final = 500
_TENANT: Final = re.compile(TENANT_ID_PATTERN)

Progress = Callable[[int, int], None]
"""Called with (offsets read, offsets in the window) after each batch."""


class ReplayInputError(RunInputError):
    """The request is invalid (CLI exit 2, API 422); ``field`` names the culprit."""


class ReplayFailedError(RunFailedError):
    """The run could not be carried out (broker unreachable, copies refused)."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What an operator or a tenant admin asks for."""

    tenant_id: str
    connector: str
    since: datetime | None = None
    until: datetime | None = None
    event_types: tuple[str, ...] = ()
    dry_run: bool = False
    requested_by: str = "cli"


@dataclass(slots=True)
class ReplayOutcome:
    """A finished run and, for a dry run, its sample payloads."""

    run: RunRecord
    samples: list[dict[str, object]] = field(default_factory=list)


@dataclass(slots=True)
class _Pass:
    """The reading state of one run (used from one worker thread at a time)."""

    run: RunRecord
    reinjector: Reinjector | None
    wanted: frozenset[str]
    matched: int = 0
    duplicates: int = 0
    malformed: int = 0
    read: int = 0
    seen: set[str] = field(default_factory=set)
    samples: list[dict[str, object]] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return 0 if self.reinjector is None else self.reinjector.queued

    def counts(self) -> dict[str, object]:
        """The figures written on the run after each batch."""
        return {
            "matched": self.matched,
            "queued": self.queued,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
        }

    def step(self, messages: Iterator[Message]) -> bool:
        """Handle up to one batch; ``False`` once the window is read to its end."""
        for _ in range(_BATCH):
            message = next(messages, None)
            if message is None:
                return False
            self.read += 1
            self._handle(message)
        return True

    def _handle(self, message: Message) -> None:
        tenant = self.run.tenant_id
        if message.key() != tenant.encode():
            return  # another tenant on the same partition
        headers = record_headers(message)
        value = message.value()
        problem = None
        if headers.get("qi.tenant_id") != tenant:
            problem = "qi.tenant_id differs from the record key"
        elif headers.get("qi.connector") != self.run.connector:
            problem = "qi.connector is not the topic's connector"
        elif any(not headers.get(name) for name in REQUIRED_HEADERS):
            problem = "delivery envelope incomplete"
        elif not value:
            problem = "no value"
        if problem is not None or value is None:
            self.malformed += 1
            logger.warning(
                "replay.record.malformed",
                extra={
                    "replay_id": self.run.run_id,
                    "tenant_id": tenant,
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "reason": problem,
                },
            )
            return
        if self.wanted and headers["qi.event_type"] not in self.wanted:
            return
        key = headers["qi.idempotency_key"]
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.matched += 1
        if self.reinjector is not None:
            self.reinjector.queue(value, headers, run_id=self.run.run_id, kind=KIND)
        elif len(self.samples) < MAX_SAMPLES:
            self.samples.append(_sample(value, headers))


def _sample(value: bytes, headers: dict[str, str]) -> dict[str, object]:
    sample: dict[str, object] = {
        "idempotency_key": headers["qi.idempotency_key"],
        "event_type": headers["qi.event_type"],
        "entity_id": headers["qi.entity_id"],
        "entity_version": headers["qi.entity_version"],
    }
    try:
        _schema, record = decode(value, registry=default_registry())
    except ContractError as exc:
        sample["error"] = f"the payload does not decode: {type(exc).__name__}"
    else:
        sample["payload"] = to_json_dict(record)
    return sample


def _aware(name: str, moment: datetime | None) -> None:
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        raise ReplayInputError(name, f"{name} must carry a time zone (e.g. 2026-12-04T10:00Z)")


class ReplayService(RunService[ReplayRequest]):
    """Validates, starts and carries out replays; see the module docstring."""

    kind = KIND

    def check(self, request: ReplayRequest) -> ReplayRequest:
        """The request with its window filled in; :class:`ReplayInputError` if invalid.

        Checks what needs no store: tenant id, connector name, event types, the window.
        """
        limits = self._settings.replay
        if not _TENANT.fullmatch(request.tenant_id):
            raise ReplayInputError("tenant", "a tenant id is 1 to 64 letters, digits, '_' or '-'")
        if request.connector not in registered():
            known = ", ".join(sorted(registered()))
            raise ReplayInputError("connector", f"unknown connector (known: {known})")
        known_types = {t.value for t in EventType}
        unknown = sorted(t for t in request.event_types if t not in known_types)
        if unknown:
            raise ReplayInputError(
                "event_types", f"unknown event type(s); known: {', '.join(sorted(known_types))}"
            )
        _aware("since", request.since)
        _aware("until", request.until)
        until = request.until or self._now()
        since = request.since or until - timedelta(seconds=limits.default_window_seconds)
        if since >= until:
            raise ReplayInputError("since", "since must be before until")
        if (until - since).total_seconds() > limits.max_window_seconds:
            days = limits.max_window_seconds / 86400
            raise ReplayInputError(
                "until", f"the window is longer than the maximum ({days:g} days)"
            )
        return replace(
            request, since=since, until=until, event_types=tuple(dict.fromkeys(request.event_types))
        )

    async def validate(self, request: ReplayRequest) -> ReplayRequest:
        """:meth:`check`, then that the tenant has a connection delivering through it."""
        checked = self.check(request)
        repository = ConnectionRepository(self._redis, key_prefix=self._settings.redis.key_prefix)
        connections = await repository.list(checked.tenant_id)
        if not any(checked.connector in export_destinations(c) for c in connections):
            raise ReplayInputError(
                "connector", "the tenant has no connection delivering through this connector"
            )
        return checked

    async def start(self, request: ReplayRequest) -> RunRecord:
        """Validate and record a queued run (:class:`ActiveRunError` if one is active)."""
        checked = await self.validate(request)
        return await self._record({**asdict(checked), "event_types": list(checked.event_types)})

    async def execute(
        self, run: RunRecord, *, on_progress: Progress | None = None
    ) -> ReplayOutcome:
        """Carry out a started run to its end; :class:`ReplayFailedError` if it fails.

        Cancelling the calling task ends the run ``cancelled`` (copies already queued stay).
        """
        run = await self.store.update(
            run, {"status": RunStatus.RUNNING, "started_at": datetime.now(UTC)}
        )
        reader: HistoryReader | None = None
        state = _Pass(run=run, reinjector=None, wanted=frozenset(run.event_types))
        logger.info("replay.run.started", extra=self._log_fields(run, state.counts()))
        try:
            timeout = self._settings.replay.kafka_timeout_seconds
            reader = await asyncio.to_thread(HistoryReader, self._settings.kafka, timeout=timeout)
            if not run.dry_run:
                state.reinjector = Reinjector(self._settings.kafka, self._topics)
            status = await self._read(reader, state, on_progress)
            if state.reinjector is not None:
                await asyncio.to_thread(state.reinjector.flush, timeout)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._end_pass(state, RunStatus.CANCELLED, "cancelled"))
            raise
        except (HistoryError, ReinjectError, KafkaException, ValueError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KafkaException) else str(exc)
            await self._end_pass(state, RunStatus.FAILED, message)
            raise ReplayFailedError(message) from exc
        finally:
            if state.reinjector is not None:  # whatever ended the run, hand over what was sent
                with contextlib.suppress(ReinjectError):
                    await asyncio.to_thread(state.reinjector.flush, 5.0)
            if reader is not None:
                await asyncio.to_thread(reader.close)
        ended = await self._end_pass(state, status, None)
        if run.dry_run:
            await self.store.save_samples(run.run_id, state.samples)
        return ReplayOutcome(run=ended, samples=state.samples)

    async def _read(
        self, reader: HistoryReader, state: _Pass, on_progress: Progress | None
    ) -> RunStatus:
        run = state.run
        topic = self._topics.exports(run.connector)
        span = await asyncio.to_thread(
            reader.tenant_span, topic, run.tenant_id, since=run.since, until=run.until
        )
        if on_progress is not None:
            on_progress(0, span.size)
        messages = reader.read(span)
        while await asyncio.to_thread(state.step, messages):
            state.run = await self.store.update(state.run, state.counts())
            if on_progress is not None:
                on_progress(state.read, span.size)
            if await self.store.cancel_requested(run.run_id):
                if isinstance(messages, Generator):
                    messages.close()  # the reader lets go of the partition now
                return RunStatus.CANCELLED
        if on_progress is not None:
            on_progress(span.size, span.size)
        return RunStatus.COMPLETED

    async def _end_pass(self, state: _Pass, status: RunStatus, error: str | None) -> RunRecord:
        if status is RunStatus.CANCELLED and state.reinjector is not None:
            await asyncio.to_thread(state.reinjector.flush, 30.0)
        return await self._end(state.run, state.counts(), status, error)

    async def replay(
        self, request: ReplayRequest, *, on_progress: Progress | None = None
    ) -> ReplayOutcome:
        """Start and carry out a run (the CLI's way)."""
        return await self.execute(await self.start(request), on_progress=on_progress)
