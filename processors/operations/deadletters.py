"""Dead letters of a connector: listing them for one tenant and sending them again (redrive).

The delivery engine dead-letters a record to ``integrations.dlq.<C>`` with its envelope, the
error that ended it (``qi.error.class``, ``qi.error.reason``, ``qi.error.status``), its error
history (``qi.errors``), the position it was read from (``qi.original.*``) and, when the
worker's ``QI_DELIVERY_DLQ_INCLUDE_PAYLOAD`` is on, the contract as its value (see
:meth:`processors.deliveries.outputs.OutcomeWriter.dead_letter`). Dead letters are keyed by
tenant, so one tenant's are on one partition: :class:`DeadLetterService` reads that partition
with a :class:`~processors.operations.history.HistoryReader` (no consumer group, nothing
written, nothing committed).

Listing (:meth:`DeadLetterService.listing`) gives one :class:`DeadLetterRow` per dead letter, in
offset order: the error, status, attempts, first and last attempt, idempotency key, event type,
entity id and coordinates; never the record's value. ``since`` is a time-zone aware time (the
broker's time index, as for a replay); ``error`` is a :data:`ERROR_KIND` that matches a dead
letter whose error class, status code or reason code (the reason's first word) equals it,
ignoring case (``PermanentError``, ``400``, ``RetryBudgetSpent``, ``review_timeout``).

Redrive (:meth:`DeadLetterService.redrive`) sends every matching dead letter of the tenant
again through :class:`~processors.operations.reinject.Reinjector` with run kind ``redrive``
and a fresh redrive id, which every delivery record of the copy carries:

- at most once per redrive: the dead letters are deduplicated by idempotency key (a record
  dead-lettered twice, e.g. by an earlier redrive that failed again, is sent once, from its
  latest dead letter);
- never twice after a delivery: the engine's claim script skips a key that was delivered
  before for every run kind but ``replay`` (a ``duplicate_skipped`` delivery record), so a
  second redrive, or a redrive of a record delivered since by other means, sends nothing;
- a dead letter without its value (written while payloads were off, see below) is sent from
  its original record: when ``qi.original.topic`` is the connector's export or retry topic,
  that offset is read and used if its idempotency key is the dead letter's. A dead letter
  whose original is gone (aged out of the retry topic, or of the exports with retention), or
  is not an artifact, is *unrecoverable*: counted and listed in the report, never dropped in
  silence (it stays in the dead-letter topic).
- a dry run reads and resolves everything the same way and queues nothing.

"Dead letters carry payloads only where configured" (issue 9, item 7) is read as: whether a
dead letter holds the contract is the deployment's choice, per worker, with
``QI_DELIVERY_DLQ_INCLUDE_PAYLOAD`` (and ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` for invalid input).
A deployment that wants payloads for some connectors only runs those connectors' workers with
the setting on (``QI_WORKER_DELIVERY_CONNECTORS`` scopes a worker): no per-connector setting
is added. Nothing depends on the payload being there: redrive recovers it from the export,
which the exports topic keeps at least as long as the dead letter.

The API bounds a redrive to ``max_records`` distinct records per call
(:class:`TooManyDeadLettersError`, before anything is queued); the CLI has no bound.

Selected dead letters. A filter may also name the dead letters it means one by one
(``selected``): their ids as a listing shows them, ``"<partition>:<offset>"`` of the
connector's dead-letter topic (:func:`dead_letter_id`), at most :data:`MAX_SELECTED`. Only
those that are dead letters of the filter's tenant (and match its ``since`` and ``error``) are
sent; an id that is not one (another tenant's, another partition, an offset that never held a
dead letter or has aged out) is never sent, only counted in the report's ``not_found``. The
selected dead letters are deduplicated by idempotency key like any others.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final, Self

from confluent_kafka import Message
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from processors.deliveries.envelope import REQUIRED_HEADERS
from processors.deliveries.models import AttemptError
from processors.operations.history import (
    HistoryError,
    HistoryReader,
    OffsetSpan,
    record_headers,
    require_aware,
    tenant_partition,
)
from processors.operations.reinject import Reinjector
from processors.settings import KafkaSettings
from processors.topics import TopicMap

__all__ = [
    "ERROR_KIND",
    "MAX_SELECTED",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterPage",
    "DeadLetterRow",
    "DeadLetterService",
    "NoSuchTopicError",
    "RedriveReport",
    "SendReport",
    "TooManyDeadLettersError",
    "Unrecoverable",
    "dead_letter_id",
    "error_kind",
    "new_run_id",
    "parse_dead_letter_id",
    "plan_redrive",
    "row_of",
    "rows_json",
]

logger = logging.getLogger(__name__)

ERROR_KIND: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""What ``--error`` / ``error=`` looks like: an error class, a status code or a reason code."""

DEAD_LETTER_ID: Final = re.compile(r"^(?P<partition>[0-9]{1,9}):(?P<offset>[0-9]{1,19})$")
"""A dead letter's id: ``<partition>:<offset>`` of its connector's dead-letter topic."""

MAX_SELECTED: Final = 500
"""The most dead letters one redrive may name one by one (``DeadLetterFilter.selected``)."""

_ERRORS = TypeAdapter(list[AttemptError])
_MERGE_GAP: Final = 500
"""Originals closer than this many offsets are read in one pass."""


def error_kind(text: str) -> str:
    """``text`` as an error kind filter; ``ValueError`` if it cannot be one."""
    if not ERROR_KIND.fullmatch(text):
        msg = "an error kind is 1 to 64 letters, digits, '_', '.' or '-' (e.g. PermanentError)"
        raise ValueError(msg)
    return text


def dead_letter_id(partition: int, offset: int) -> str:
    """The id a listing shows for the dead letter at ``partition`` and ``offset``."""
    return f"{partition}:{offset}"


def parse_dead_letter_id(text: str) -> tuple[int, int]:
    """``(partition, offset)`` of a dead letter's id; ``ValueError`` if it is not one."""
    found = DEAD_LETTER_ID.fullmatch(text)
    if found is None:
        msg = f"a dead letter id is <partition>:<offset> (e.g. 0:42), not {text[:40]!r}"
        raise ValueError(msg)
    return int(found["partition"]), int(found["offset"])


def new_run_id(prefix: str) -> str:
    """A fresh run id (``rd_…``, ``rp_…``) that fits :data:`~.reinject.RUN_ID`."""
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, as read (the value is never shown)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, message: Message, *, partition: int) -> Self:
        """The record ``message``, read from ``partition``."""
        _kind, stamp = message.timestamp()
        return cls(
            partition=partition,
            offset=message.offset() or 0,
            timestamp_ms=stamp,
            key=message.key(),
            value=message.value() or b"",
            headers=record_headers(message),
        )

    @property
    def idempotency_key(self) -> str:
        return self.headers.get("qi.idempotency_key", "")


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters of a connector an operator means."""

    tenant_id: str
    connector: str
    since: datetime | None = None
    error: str | None = None
    selected: frozenset[tuple[int, int]] | None = None
    """Only these dead letters, by (partition, offset); ``None``: every one matching."""

    def __post_init__(self) -> None:
        if self.since is not None:
            require_aware(self.since)
        if self.error is not None:
            error_kind(self.error)
        if self.selected is not None and not 1 <= len(self.selected) <= MAX_SELECTED:
            msg = f"select 1 to {MAX_SELECTED} dead letters"
            raise ValueError(msg)

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` is this tenant's, selected (if some are) and of the asked kind."""
        headers = letter.headers
        if headers.get("qi.tenant_id") != self.tenant_id:
            return False
        if self.selected is not None and (letter.partition, letter.offset) not in self.selected:
            return False
        if self.error is None:
            return True
        wanted = self.error.lower()
        reason = headers.get("qi.error.reason", "")
        reason_code = re.split(r"[\s:;,(]", reason.strip(), maxsplit=1)[0].lower()
        return wanted in {
            headers.get("qi.error.class", "").lower(),
            headers.get("qi.error.status", "").lower(),
            reason_code,
        }


class DeadLetterRow(BaseModel):
    """One dead letter as an operator sees it: what failed and when, never the payload."""

    model_config = ConfigDict(frozen=True)

    id: str
    """``<partition>:<offset>`` (:func:`dead_letter_id`): what a redrive may select it by."""
    partition: int
    offset: int
    dead_lettered_at: datetime | None
    tenant_id: str
    connector: str
    connection_id: str | None
    delivery_id: str | None
    idempotency_key: str | None
    event_type: str | None
    event_id: str | None
    entity_id: str | None
    entity_version: int | None
    error_class: str | None
    error_reason: str | None
    status_code: int | None
    attempts: int | None
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    errors: int
    """How many failed attempts the history holds (the last 50 are kept)."""
    payload_included: bool
    replay_id: str | None
    """The run (a redrive, a replay) whose copy was dead-lettered, if it was one."""


def _int(text: str | None) -> int | None:
    try:
        return None if not text else int(text)
    except ValueError:
        return None


def row_of(letter: DeadLetter) -> DeadLetterRow:
    """The row of one dead letter; headers that do not parse are shown as missing."""
    headers = letter.headers
    try:
        history = _ERRORS.validate_json(headers.get("qi.errors") or "[]")
    except ValidationError:
        history = []
    stamp = (
        datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC) if letter.timestamp_ms > 0 else None
    )
    return DeadLetterRow(
        id=dead_letter_id(letter.partition, letter.offset),
        partition=letter.partition,
        offset=letter.offset,
        dead_lettered_at=stamp,
        tenant_id=headers.get("qi.tenant_id", ""),
        connector=headers.get("qi.connector", ""),
        connection_id=headers.get("qi.connection_id"),
        delivery_id=headers.get("qi.delivery_id"),
        idempotency_key=headers.get("qi.idempotency_key"),
        event_type=headers.get("qi.event_type"),
        event_id=headers.get("qi.event_id"),
        entity_id=headers.get("qi.entity_id"),
        entity_version=_int(headers.get("qi.entity_version")),
        error_class=headers.get("qi.error.class") or None,
        error_reason=headers.get("qi.error.reason") or None,
        status_code=_int(headers.get("qi.error.status")),
        attempts=_int(headers.get("qi.attempt")),
        first_attempt_at=history[0].at if history else None,
        last_attempt_at=history[-1].at if history else None,
        errors=len(history),
        payload_included=bool(letter.value) and headers.get("qi.payload_included") != "false",
        replay_id=headers.get("qi.replay_id") or None,
    )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """Rows in offset order; ``next_offset`` continues the listing when more match."""

    rows: list[DeadLetterRow]
    next_offset: int | None


@dataclass(frozen=True, slots=True)
class Unrecoverable:
    """A matching dead letter that cannot be sent again, and why."""

    offset: int
    idempotency_key: str
    reason: str


@dataclass(slots=True)
class SendReport:
    """What a run that sends records again did (a redrive, a republish): how many records it
    matched and queued; ``id_name`` is what its summary calls ``run_id``."""

    id_name: ClassVar[str]
    run_id: str
    dry_run: bool
    matched: int = 0
    queued: int = 0

    def summary(self) -> dict[str, object]:
        """The figures every such run prints as its last JSON line, id first."""
        counts = {"matched": self.matched, "queued": self.queued, "dry_run": self.dry_run}
        return {self.id_name: self.run_id, **counts}


@dataclass(slots=True)
class RedriveReport(SendReport):
    """What one redrive did (``matched`` distinct records = ``queued`` + ``unrecoverable``
    when it was not a dry run)."""

    id_name: ClassVar[str] = "redrive_id"
    from_original: int = 0
    """Matched records whose value was read from their original record."""
    unrecoverable: list[Unrecoverable] = field(default_factory=list)
    not_found: int = 0
    """Selected ids that are no dead letter of the tenant matching the filter (none sent)."""

    @property
    def redrive_id(self) -> str:
        return self.run_id

    def summary(self) -> dict[str, object]:
        """The last line of ``dlq redrive --json`` (and the API's answer)."""
        return {
            **SendReport.summary(self),
            "from_original": self.from_original,
            "unrecoverable": len(self.unrecoverable),
            "not_found": self.not_found,
        }


class NoSuchTopicError(HistoryError):
    """The connector's dead-letter topic does not exist (``topics ensure`` was not run, or
    another ``QI_TOPIC_PREFIX``): nothing was ever dead-lettered there."""


class TooManyDeadLettersError(ValueError):
    """More distinct dead letters match than one bounded redrive may send."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} dead letters match")
        self.limit = limit


def plan_redrive(
    letters: Iterable[DeadLetter], chosen: DeadLetterFilter, *, max_records: int | None = None
) -> list[DeadLetter]:
    """The dead letters to send, one per idempotency key (its latest), in offset order.

    Raises :class:`TooManyDeadLettersError` as soon as more than ``max_records`` distinct
    keys match (nothing has been sent then).
    """
    latest: dict[str, DeadLetter] = {}
    for letter in letters:
        if not chosen.matches(letter):
            continue
        key = letter.idempotency_key or f"offset:{letter.offset}"
        latest.pop(key, None)  # re-insert: the order is that of the latest dead letter
        latest[key] = letter
        if max_records is not None and len(latest) > max_records:
            raise TooManyDeadLettersError(max_records)
    return list(latest.values())


def _noting(
    letters: Iterable[DeadLetter], chosen: DeadLetterFilter, found: set[tuple[int, int]]
) -> Generator[DeadLetter, None, None]:
    """``letters`` unchanged; the selected ones that match ``chosen`` are added to ``found``."""
    for letter in letters:
        if chosen.selected is not None and chosen.matches(letter):
            found.add((letter.partition, letter.offset))
        yield letter


ReaderFactory = Callable[[], HistoryReader]


class DeadLetterService:
    """Lists and redrives one connector's dead letters for one tenant; see the module."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicMap,
        *,
        reader: ReaderFactory | None = None,
        reinjector: Callable[[], Reinjector] | None = None,
    ) -> None:
        self._topics = topics
        self._reader = reader or (lambda: HistoryReader(kafka))
        self._reinjector = reinjector or (lambda: Reinjector(kafka, topics))

    def _letters(
        self, reader: HistoryReader, chosen: DeadLetterFilter, *, from_offset: int | None = None
    ) -> Generator[DeadLetter, None, None]:
        topic = self._topics.dlq(chosen.connector)
        try:
            partitions = reader.partitions(topic)
        except HistoryError as exc:
            raise NoSuchTopicError(str(exc)) from exc
        partition = tenant_partition(chosen.tenant_id, partitions)
        if from_offset is not None:
            span = reader.span(topic, partition, from_offset=from_offset)
            if chosen.since is not None:
                by_time = reader.span(topic, partition, since=chosen.since)
                span = OffsetSpan(topic, partition, max(span.start, by_time.start), span.end)
        else:
            span = reader.span(topic, partition, since=chosen.since)
        for message in reader.read(span):
            yield DeadLetter.of(message, partition=partition)

    def listing(
        self, chosen: DeadLetterFilter, *, limit: int, from_offset: int | None = None
    ) -> DeadLetterPage:
        """Up to ``limit`` rows from ``from_offset`` (or ``since``, or the oldest kept)."""
        rows: list[DeadLetterRow] = []
        next_offset: int | None = None
        with (
            self._reader() as reader,
            closing(self._letters(reader, chosen, from_offset=from_offset)) as letters,
        ):
            for letter in letters:
                if not chosen.matches(letter):
                    continue
                if len(rows) == limit:
                    next_offset = letter.offset
                    break
                rows.append(row_of(letter))
        return DeadLetterPage(rows, next_offset)

    def redrive(
        self,
        chosen: DeadLetterFilter,
        *,
        dry_run: bool,
        redrive_id: str | None = None,
        max_records: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> RedriveReport:
        """Send the matching dead letters again (see the module); nothing sent on a dry run.

        Raises :class:`TooManyDeadLettersError` (nothing sent) past ``max_records``,
        :class:`~.history.HistoryError` when a topic cannot be read and
        :class:`~.reinject.ReinjectError` when the broker refuses copies.
        """
        report = RedriveReport(redrive_id or new_run_id("rd"), dry_run)
        found: set[tuple[int, int]] = set()
        start = None if chosen.selected is None else min(o for _p, o in chosen.selected)
        with (
            self._reader() as reader,
            closing(self._letters(reader, chosen, from_offset=start)) as letters,
        ):
            planned = plan_redrive(_noting(letters, chosen, found), chosen, max_records=max_records)
            report.matched = len(planned)
            values = self._values(reader, chosen.connector, planned, report)
        if chosen.selected is not None:
            report.not_found = len(chosen.selected - found)
        logger.info(
            "operations.redrive.planned",
            extra={
                "redrive_id": report.redrive_id,
                "tenant_id": chosen.tenant_id,
                "connector": chosen.connector,
                "matched": report.matched,
                "unrecoverable": len(report.unrecoverable),
                "not_found": report.not_found,
                "dry_run": dry_run,
            },
        )
        if dry_run:
            return report
        with self._reinjector() as reinjector:
            for letter in planned:
                value = values.get(letter.offset)
                if value is None:
                    continue
                reinjector.queue(value, letter.headers, run_id=report.redrive_id, kind="redrive")
                if on_progress is not None:
                    on_progress(reinjector.queued)
            reinjector.flush()
            report.queued = reinjector.queued
        logger.info(
            "operations.redrive.queued",
            extra={"redrive_id": report.redrive_id, "queued": report.queued},
        )
        return report

    def _values(
        self,
        reader: HistoryReader,
        connector: str,
        planned: list[DeadLetter],
        report: RedriveReport,
    ) -> dict[int, bytes]:
        """Each planned dead letter's value by its offset, read from its original if needed.

        Letters that cannot be resolved are added to ``report.unrecoverable``.
        """
        values: dict[int, bytes] = {}
        wanted: dict[tuple[str, int], dict[int, DeadLetter]] = {}
        sources = {self._topics.exports(connector), self._topics.retry(connector)}
        for letter in planned:
            missing = [name for name in REQUIRED_HEADERS if not letter.headers.get(name)]
            if missing:
                why = f"not an exported artifact: missing {', '.join(missing)}"
                report.unrecoverable.append(
                    Unrecoverable(letter.offset, letter.idempotency_key, why)
                )
                continue
            if letter.value:
                values[letter.offset] = letter.value
                continue
            topic = letter.headers.get("qi.original.topic", "")
            partition = _int(letter.headers.get("qi.original.partition"))
            offset = _int(letter.headers.get("qi.original.offset"))
            if topic not in sources or partition is None or offset is None:
                why = "no payload, and the original is not on an export or retry topic"
                report.unrecoverable.append(
                    Unrecoverable(letter.offset, letter.idempotency_key, why)
                )
                continue
            wanted.setdefault((topic, partition), {})[offset] = letter
        for (topic, partition), by_offset in wanted.items():
            found = self._originals(reader, topic, partition, sorted(by_offset))
            for offset, letter in sorted(by_offset.items()):
                original = found.get(offset)
                if original is None:
                    why = f"no payload, and {topic}[{partition}]@{offset} is gone (retention)"
                elif original.headers.get("qi.idempotency_key") != letter.idempotency_key:
                    why = f"no payload, and {topic}[{partition}]@{offset} is another artifact"
                elif not original.value:
                    why = f"no payload, and {topic}[{partition}]@{offset} has none either"
                else:
                    values[letter.offset] = original.value
                    report.from_original += 1
                    continue
                report.unrecoverable.append(
                    Unrecoverable(letter.offset, letter.idempotency_key, why)
                )
        return values

    @staticmethod
    def _originals(
        reader: HistoryReader, topic: str, partition: int, offsets: list[int]
    ) -> dict[int, DeadLetter]:
        """The records at ``offsets`` (sorted) that are still there, nearby ones in one pass."""
        found: dict[int, DeadLetter] = {}
        runs: list[list[int]] = []
        for offset in offsets:
            if runs and offset - runs[-1][-1] <= _MERGE_GAP:
                runs[-1].append(offset)
            else:
                runs.append([offset])
        wanted = set(offsets)
        for run in runs:
            available = reader.span(topic, partition, from_offset=run[0])
            span = OffsetSpan(topic, partition, available.start, min(available.end, run[-1] + 1))
            for message in reader.read(span):
                if message.offset() in wanted:
                    letter = DeadLetter.of(message, partition=partition)
                    found[letter.offset] = letter
        return found


def rows_json(rows: Iterable[DeadLetterRow]) -> list[dict[str, object]]:
    """Rows as JSON-ready dicts (times in ISO 8601)."""
    return [json.loads(row.model_dump_json()) for row in rows]
