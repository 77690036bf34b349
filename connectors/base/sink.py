"""The connector interface: records in, one typed outcome per record out.

A connector is a ``{Partner}Sink`` (``WebhookSink``, ``HubSpotSink``, ...) built from a
:class:`~connectors.base.context.SinkContext` for one connection. Most connectors
subclass :class:`BatchingSink` and implement only :meth:`BaseSink.write`; the base class
chunks to the partner's bulk limit and turns raised errors into per-record outcomes.

Buffering is the caller's job: the delivery agent collects records per connection
(``stream.take(n, within=...)``) and calls :meth:`BaseSink.deliver` with them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from connectors.base.config import ConnectionConfig
from connectors.base.context import ConfigT, SinkContext
from connectors.base.contract import ContractRecord, ContractViolation, RecordT, parse_record
from connectors.base.errors import (
    ConnectorError,
    EndpointGoneError,
    PermanentError,
    TransientError,
)
from connectors.base.ratelimit import RateLimit

__all__ = [
    "BaseSink",
    "BatchOutcome",
    "BatchingSink",
    "DeliveryResult",
    "OutboundRecord",
    "RecordFailure",
]


class OutboundRecord(BaseModel):
    """One export to deliver to one connection's destination.

    ``idempotency_key`` is stable per (destination, event type, entity, entity version)
    and across retries; ``attempt`` is 1-based and grows with each retry.

    ``record`` is the contract record as its typed model (:mod:`connectors.base.contract`),
    decoded once by the delivery engine; partner connectors read it through
    :meth:`contract`. ``payload`` is the same record as a JSON-able dict, for a connector
    that sends the contract as JSON (the webhook's body). ``record`` is ``None`` only for a
    record built by hand from a payload, or one whose connector sends payloads that fail
    their model as they are (see :meth:`BaseSink.contract_error`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivery_id: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    connection_id: str = Field(min_length=1)
    connector: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    idempotency_key: str = Field(min_length=1)
    correlation_id: str
    entity_id: str
    entity_version: int = Field(ge=0)
    occurred_at: str = Field(min_length=1)
    schema_version: str
    payload: dict[str, Any]
    attempt: int = Field(ge=1)
    record: ContractRecord | None = None
    replay_id: str | None = None
    """The operator run (replay, redrive, release, backfill) sending this copy, if any."""

    def contract(self, model: type[RecordT]) -> RecordT:
        """The typed contract record as ``model``.

        The engine's typed record when it is one; otherwise (a record built by hand) the
        payload parsed as ``model``, raising :class:`~connectors.base.contract.ContractViolation`.
        """
        typed = self.record
        if isinstance(typed, model):
            return typed
        return parse_record(model, self.payload)

    def log_fields(self) -> dict[str, Any]:
        """Coordinates and ids for structured logging; never the payload."""
        return {
            "delivery_id": self.delivery_id,
            "tenant_id": self.tenant_id,
            "connection_id": self.connection_id,
            "connector": self.connector,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "attempt": self.attempt,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryResult:
    """A record the partner accepted."""

    delivery_id: str
    status_code: int
    duration_ms: float
    partner_object_id: str | None = None
    outcome: Literal["delivered"] = "delivered"


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A record that was not delivered, and why.

    ``attempted`` is false when the record was never sent because an earlier chunk of the
    same call failed in a way that concerns the whole connection (backpressure, outage,
    credentials, gone endpoint); the caller may choose not to count that as an attempt.
    """

    delivery_id: str
    error: ConnectorError
    attempted: bool = True


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What happened to each record of a call: delivered or failed, one entry per record."""

    delivered: tuple[DeliveryResult, ...] = ()
    failed: tuple[RecordFailure, ...] = ()

    @classmethod
    def all_failed(
        cls,
        records: Sequence[OutboundRecord],
        error: ConnectorError,
        *,
        attempted: bool = True,
    ) -> BatchOutcome:
        """Every record failed with the same ``error``."""
        return cls(failed=tuple(RecordFailure(r.delivery_id, error, attempted) for r in records))

    @classmethod
    def combine(cls, outcomes: Iterable[BatchOutcome]) -> BatchOutcome:
        """All ``outcomes`` together, in order."""
        delivered: list[DeliveryResult] = []
        failed: list[RecordFailure] = []
        for outcome in outcomes:
            delivered.extend(outcome.delivered)
            failed.extend(outcome.failed)
        return cls(tuple(delivered), tuple(failed))

    def merge(self, other: BatchOutcome) -> BatchOutcome:
        """Both outcomes together, in order."""
        return BatchOutcome.combine((self, other))

    @property
    def delivery_ids(self) -> frozenset[str]:
        """Ids of every record this outcome covers."""
        return frozenset(r.delivery_id for r in self.delivered) | frozenset(
            f.delivery_id for f in self.failed
        )


def _check_one_connection(records: Sequence[OutboundRecord]) -> None:
    if len({(r.tenant_id, r.connection_id) for r in records}) > 1:
        msg = "a sink call takes records of one connection only"
        raise ValueError(msg)
    if len({r.delivery_id for r in records}) != len(records):
        msg = "delivery ids in one call must be unique"
        raise ValueError(msg)


def _stops_the_batch(error: ConnectorError) -> bool:
    """A plain permanent failure concerns its chunk's content; anything else the connection."""
    return not isinstance(error, PermanentError) or isinstance(error, EndpointGoneError)


class BaseSink(abc.ABC, Generic[ConfigT]):
    """A connector for one connection. Lifecycle, driven by the delivery service:

    1. ``__init__(context)``: cheap; no I/O.
    2. :meth:`setup` once, before the first write: open clients, check the config against
       the context. Raising a ``ConnectorError`` means the connection cannot be used
       (``PermanentError``: misconfigured; ``AuthenticationError``: needs re-authorisation).
    3. :meth:`deliver` any number of times, never concurrently with ``setup``/``close``;
       it calls :meth:`write` with at most ``max_batch_size`` records of ONE connection.
    4. :meth:`close` once at shutdown (also after a failed ``setup``): release clients.
       It must not raise.

    ``async with sink:`` runs ``setup`` and ``close`` around a block.

    Class attributes declare the connector: ``name``, ``config_class`` (the
    ``ConnectionConfig`` subclass its context carries), ``max_batch_size`` (the partner's
    bulk limit; 1 for one request per record) and ``default_rate_limit``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ConnectionConfig]]
    max_batch_size: ClassVar[int] = 1
    default_rate_limit: ClassVar[RateLimit | None] = None

    def __init__(self, context: SinkContext[ConfigT]) -> None:
        self.context = context

    @property
    def config(self) -> ConfigT:
        """The connection's validated settings."""
        return self.context.config

    async def setup(self) -> None:
        """Called once before the first write; see the class docstring."""

    def contract_error(
        self, record: OutboundRecord, violation: ContractViolation
    ) -> ConnectorError | None:
        """The error for ``record``, whose payload fails its contract model, or ``None``.

        Called by the delivery engine instead of :meth:`write` for such a record; the error
        is reported as the record's attempted failure (a ``PermanentError`` dead-letters it).
        ``None`` means the connector sends the record without its typed form (``record`` is
        ``None``). The default is a ``PermanentError`` naming the offending fields.
        """
        return PermanentError(
            f"{record.event_type} payload does not match its contract: "
            f"{', '.join(violation.fields)}",
            partner=self.name,
        )

    async def close(self) -> None:
        """Called once at shutdown; must not raise."""

    async def __aenter__(self) -> Self:
        try:
            await self.setup()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        """Send ``batch`` (1 to ``max_batch_size`` records of one connection) to the partner.

        Called by :meth:`deliver`. Report per-record failures in the returned outcome (a
        bulk call where some inputs failed, e.g. HubSpot 207): do not raise for them.
        Raising a ``ConnectorError`` means every record of ``batch`` failed with it. Any
        other exception is a bug and propagates to the caller (nothing is committed).
        """

    async def deliver(self, records: Sequence[OutboundRecord]) -> BatchOutcome:
        """The service's entry point: one outcome per record, never a raised ``ConnectorError``.

        Raises ``ValueError`` for records of several connections, duplicate delivery ids or
        more than ``max_batch_size`` records (``BatchingSink`` chunks instead).
        """
        _check_one_connection(records)
        if len(records) > self.max_batch_size:
            msg = f"{type(self).__name__} takes at most {self.max_batch_size} records per call"
            raise ValueError(msg)
        if not records:
            return BatchOutcome()
        outcome, _ = await self._write_chunk(records)
        return outcome

    async def _write_chunk(
        self, chunk: Sequence[OutboundRecord]
    ) -> tuple[BatchOutcome, ConnectorError | None]:
        """Call ``write`` and account for every record of ``chunk`` exactly once."""
        clock = self.context.clock
        started = clock.monotonic()
        try:
            outcome = await self.write(chunk)
        except ConnectorError as error:
            self.context.logger.info(
                "sink.chunk.failed",
                extra={
                    **self.context.log_fields(),
                    **error.log_fields(),
                    "records": len(chunk),
                    "duration_ms": round((clock.monotonic() - started) * 1000, 1),
                },
            )
            return BatchOutcome.all_failed(chunk, error), error
        return self._complete(chunk, outcome), None

    def _complete(self, chunk: Sequence[OutboundRecord], outcome: BatchOutcome) -> BatchOutcome:
        expected = {r.delivery_id for r in chunk}
        reported = outcome.delivery_ids
        seen: set[str] = set()
        delivered: list[DeliveryResult] = []
        failed: list[RecordFailure] = []
        for result in outcome.delivered:
            if result.delivery_id in expected and result.delivery_id not in seen:
                seen.add(result.delivery_id)
                delivered.append(result)
        for failure in outcome.failed:
            if failure.delivery_id in expected and failure.delivery_id not in seen:
                seen.add(failure.delivery_id)
                failed.append(failure)
        missing = [r for r in chunk if r.delivery_id not in reported]
        if missing or reported - expected:
            self.context.logger.error(
                "sink.outcome.mismatch",
                extra={
                    **self.context.log_fields(),
                    "missing": len(missing),
                    "unexpected": len(reported - expected),
                },
            )
        if missing:
            error = TransientError("connector reported no outcome", partner=self.name)
            failed.extend(RecordFailure(r.delivery_id, error) for r in missing)
        return BatchOutcome(tuple(delivered), tuple(failed))


class BatchingSink(BaseSink[ConfigT]):
    """A sink whose :meth:`deliver` takes any number of records and chunks them.

    Chunks of ``max_batch_size`` records go to :meth:`write` one after another, in order,
    and their outcomes are merged. A per-record failure, or a plain ``PermanentError``
    raised for a chunk, concerns only those records: the next chunk is written. Any other
    raised error (``TransientError``, ``BackpressureError``, ``AuthenticationError``,
    ``EndpointGoneError``) concerns the connection: the remaining chunks are not sent and
    fail with the same error, marked ``attempted=False``.
    """

    async def deliver(self, records: Sequence[OutboundRecord]) -> BatchOutcome:
        """Chunk ``records`` to ``max_batch_size`` and write each chunk; see the class doc."""
        _check_one_connection(records)
        size = self.max_batch_size
        outcomes: list[BatchOutcome] = []
        for start in range(0, len(records), size):
            chunk_outcome, error = await self._write_chunk(records[start : start + size])
            outcomes.append(chunk_outcome)
            if error is not None and _stops_the_batch(error):
                rest = records[start + size :]
                if rest:
                    self.context.logger.warning(
                        "sink.batch.stopped",
                        extra={
                            **self.context.log_fields(),
                            **error.log_fields(),
                            "not_attempted": len(rest),
                        },
                    )
                outcomes.append(BatchOutcome.all_failed(rest, error, attempted=False))
                break
        return BatchOutcome.combine(outcomes)
