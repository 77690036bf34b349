"""One HubSpot write's bookkeeping: its records grouped per entity, and their outcomes.

A write (:meth:`HubSpotSink.write <connectors.hubspot.sink.HubSpotSink.write>`) parses its
records and groups them (:func:`group_batch`): several records of one entity are written
once, with the highest ``entity_version`` (the last on a tie), and share its outcome. A
:class:`Group` is such a set of records; a :class:`Run` collects the outcome of every
group as the steps go, and turns it into the write's ``BatchOutcome`` so that every record
ends delivered or failed exactly once. Once a failure concerning the connection stops the
run (``Run.stop``), the records not reached fail with that error. Pure bookkeeping: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from connectors.base.errors import (
    AuthenticationError,
    ConnectorError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
)
from connectors.base.identity import EntityKind
from connectors.base.sink import BatchOutcome, DeliveryResult, OutboundRecord, RecordFailure
from connectors.hubspot.exports import (
    CompanyWrite,
    Deletion,
    Export,
    NoteWrite,
    PayloadError,
    PersonWrite,
)
from connectors.hubspot.payloads import export_for

__all__ = [
    "Group",
    "Run",
    "attempted_when_stopped",
    "delivered",
    "entity",
    "group_batch",
    "is_request_scoped",
    "unique",
    "written_id",
]

_PARTNER: Final[str] = "hubspot"


@dataclass(slots=True)
class Group:
    """The records of one entity (or note) in a batch; ``winner`` is the one written."""

    records: list[OutboundRecord]
    export: Export

    @property
    def winner(self) -> OutboundRecord:
        return self.records[-1]

    @property
    def trace_id(self) -> str:
        return self.winner.delivery_id


@dataclass(slots=True)
class Run:
    """The outcomes of one ``write``: every record ends delivered or failed exactly once."""

    records: Sequence[OutboundRecord]
    started: float
    monotonic: Callable[[], float]
    results: dict[str, DeliveryResult | RecordFailure] = field(default_factory=dict)
    stop: ConnectorError | None = None
    links: dict[tuple[EntityKind, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def deliver(self, group: Group, *, status_code: int, partner_object_id: str | None) -> None:
        duration_ms = round((self.monotonic() - self.started) * 1000, 1)
        for record in group.records:
            self.results[record.delivery_id] = DeliveryResult(
                delivery_id=record.delivery_id,
                status_code=status_code,
                duration_ms=duration_ms,
                partner_object_id=partner_object_id,
            )

    def fail(self, group: Group, error: ConnectorError, *, attempted: bool = True) -> None:
        for record in group.records:
            self.results[record.delivery_id] = RecordFailure(record.delivery_id, error, attempted)

    def defer(self, group: Group) -> None:
        """Fail an already written group with the stop error: a later step it needs (an
        association) was not sent, so the whole record must come back."""
        if self.stop is not None:
            self.fail(group, self.stop, attempted=attempted_when_stopped(self.stop))

    def fail_record(self, record: OutboundRecord, error: ConnectorError) -> None:
        self.results[record.delivery_id] = RecordFailure(record.delivery_id, error)

    def open(self, groups: Sequence[Group]) -> list[Group]:
        """The groups still to be written (none once the run is stopped)."""
        if self.stop is not None:
            return []
        return [g for g in groups if g.winner.delivery_id not in self.results]

    def is_open(self, group: Group) -> bool:
        return self.stop is None and group.winner.delivery_id not in self.results

    def pending_results(self, groups: Sequence[Group]) -> list[Group]:
        """Groups not failed so far (delivered ones included)."""
        return [
            g
            for g in groups
            if not isinstance(self.results.get(g.winner.delivery_id), RecordFailure)
        ]

    def outcome(self) -> BatchOutcome:
        delivered: list[DeliveryResult] = []
        failed: list[RecordFailure] = []
        stop = self.stop or TransientError("record not reached", partner=_PARTNER)
        attempted = attempted_when_stopped(stop)
        for record in self.records:
            result = self.results.get(record.delivery_id)
            if result is None:
                result = RecordFailure(record.delivery_id, stop, attempted)
            if isinstance(result, DeliveryResult):
                delivered.append(result)
            else:
                failed.append(result)
        return BatchOutcome(tuple(delivered), tuple(failed))


def attempted_when_stopped(error: ConnectorError) -> bool:
    """Records a stopped run never sent count as attempted only for errors the service must
    act on for the connection (park on quota, re-authorise): it acts on attempted ones."""
    return isinstance(error, QuotaExhaustedError | AuthenticationError)


def is_request_scoped(error: ConnectorError) -> bool:
    """Whether a failed request concerns only its own records (400s, 423 Locked)."""
    if isinstance(error, PermanentError):
        return True
    return isinstance(error, TransientError) and error.status_code == 423


def delivered(run: Run, group: Group) -> bool:
    return isinstance(run.results.get(group.winner.delivery_id), DeliveryResult)


def unique(groups: Iterable[Group]) -> list[Group]:
    """``groups`` without repeats, in order."""
    return list({id(g): g for g in groups}.values())


def written_id(run: Run, group: Group) -> str | None:
    """The object id a delivered group was written to, else ``None``."""
    result = run.results.get(group.winner.delivery_id)
    return result.partner_object_id if isinstance(result, DeliveryResult) else None


def entity(group: Group) -> CompanyWrite | PersonWrite:
    export = group.export
    if not isinstance(export, CompanyWrite | PersonWrite):  # pragma: no cover - grouping bug
        msg = "not an entity write"
        raise TypeError(msg)
    return export


def _group_key(export: Export) -> tuple[str, str]:
    if isinstance(export, CompanyWrite | PersonWrite):
        return (f"write:{export.kind.value}", export.queast_id)
    if isinstance(export, Deletion):
        return (f"delete:{export.kind.value}", export.queast_id)
    return ("note", export.key)


def group_batch(
    run: Run, batch: Sequence[OutboundRecord], *, queast_id_property: str, partner: str
) -> tuple[list[Group], list[Group], list[Group], list[Group]]:
    """Parse every record and group the writes per entity (payload errors fail alone):
    (companies, people, deletions, notes)."""
    property_name = queast_id_property
    groups: dict[tuple[str, str], Group] = {}
    for record in batch:
        try:
            export = export_for(record, queast_id_property=property_name)
        except PayloadError as exc:
            run.fail_record(record, PermanentError(str(exc), partner=partner))
            continue
        key = _group_key(export)
        group = groups.get(key)
        if group is None:
            groups[key] = Group([record], export)
        elif record.entity_version >= group.winner.entity_version:
            group.records.append(record)
            group.export = export
        else:
            group.records.insert(0, record)
    ordered = list(groups.values())
    return (
        [g for g in ordered if isinstance(g.export, CompanyWrite)],
        [g for g in ordered if isinstance(g.export, PersonWrite)],
        [g for g in ordered if isinstance(g.export, Deletion)],
        [g for g in ordered if isinstance(g.export, NoteWrite)],
    )
