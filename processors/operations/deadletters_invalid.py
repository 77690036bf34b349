"""Invalid input: listing ``integrations.dlq.invalid-events``, exporting it to fix, republishing.

The router dead-letters every record of ``queast.domain-events`` it cannot route (see
:mod:`processors.routing.service`): the reason (``qi.error.reason``, an
:class:`~processors.routing.parsing.InvalidReason`), a detail that names fields and never values
(``qi.error.detail``), the original coordinates and sizes (``qi.original.*``), the tenant when
the envelope named a well-formed one (``qi.tenant_id``), and the original key and value when
``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` is on and they fit.

- :func:`list_invalid`: one :class:`InvalidRow` per dead letter (reason, detail, sizes,
  coordinates; never the value). With a tenant, the partition of the tenant's key is read and
  a record is the tenant's when its key or its ``qi.tenant_id`` names it (a record is
  partitioned by its own key, so one whose key names another tenant is listed under that
  one); without a tenant, every partition is read (records without a key, or a key that is no
  tenant, are only listed so).
- :func:`export_invalid`: writes the raw values to a file the operator chose, one per line, for
  fixing and republishing. This is the one command that writes payloads, and only there: the
  file is created new (an existing file is refused) with mode ``0600``. A value kept in the
  dead letter is used as it is; a dead letter without its value is resolved from its original
  record in ``queast.domain-events`` (same offset and size). A value that is not one line of
  UTF-8 JSON is written compacted when it parses as JSON; a value that is neither, or is gone,
  is *skipped* and reported with its offset and why, never left out in silence.
- :func:`check_lines` / :func:`republish`: every line of a JSON-lines file is checked with the
  router's own parser (:func:`~processors.routing.parsing.parse_domain_event`, the record key
  being the line's ``tenant_id`` as ``publish`` sets it, and the router's size limit); with a
  tenant, a line of another tenant is refused too. If any line is refused nothing is
  published (the operator fixes the file and runs it again); otherwise every line is
  published to ``queast.domain-events`` by :func:`processors.publishing.publish_lines`, the
  ``publish`` command's code path. A republish id names the run in logs and output.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from processors.operations.deadletters import DeadLetter, SendReport, new_run_id
from processors.operations.history import (
    HistoryReader,
    OffsetSpan,
    tenant_partition,
)
from processors.publishing import iter_event_lines, publish_lines, tenant_key
from processors.routing.parsing import InvalidEventError, parse_domain_event
from processors.settings import KafkaSettings
from processors.topics import TopicMap

__all__ = [
    "ExportReport",
    "InvalidRow",
    "LineRefusal",
    "RepublishReport",
    "Skipped",
    "check_lines",
    "export_invalid",
    "list_invalid",
    "republish",
]

logger = logging.getLogger(__name__)


class InvalidRow(BaseModel):
    """One invalid input record's dead letter, without its value."""

    model_config = ConfigDict(frozen=True)

    partition: int
    offset: int
    dead_lettered_at: datetime | None
    tenant_id: str | None
    reason: str | None
    detail: str | None
    original: str | None
    """``topic:partition:offset`` of the input record."""
    value_bytes: int | None
    payload_included: bool


@dataclass(frozen=True, slots=True)
class _Invalid(DeadLetter):
    """A record of the invalid-events dead-letter topic."""

    def belongs_to(self, tenant_id: str | None) -> bool:
        if tenant_id is None:
            return True
        return self.key == tenant_id.encode() or self.headers.get("qi.tenant_id") == tenant_id

    def row(self) -> InvalidRow:
        h = self.headers
        topic, partition, offset = (
            h.get("qi.original.topic"),
            h.get("qi.original.partition"),
            h.get("qi.original.offset"),
        )
        size = h.get("qi.original.value_bytes", "")
        return InvalidRow(
            partition=self.partition,
            offset=self.offset,
            dead_lettered_at=(
                datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
                if self.timestamp_ms > 0
                else None
            ),
            tenant_id=h.get("qi.tenant_id"),
            reason=h.get("qi.error.reason"),
            detail=h.get("qi.error.detail"),
            original=f"{topic}:{partition}:{offset}" if topic else None,
            value_bytes=int(size) if size.isdigit() else None,
            payload_included=bool(self.value),
        )


def _read(
    reader: HistoryReader, topics: TopicMap, tenant_id: str | None, since: datetime | None
) -> Generator[_Invalid, None, None]:
    topic = topics.invalid_events
    count = reader.partitions(topic)
    partitions = range(count) if tenant_id is None else [tenant_partition(tenant_id, count)]
    for partition in partitions:
        span = reader.span(topic, partition, since=since)
        for message in reader.read(span):
            record = _Invalid.of(message, partition=partition)
            if record.belongs_to(tenant_id):
                yield record


def list_invalid(
    kafka: KafkaSettings,
    topics: TopicMap,
    *,
    tenant_id: str | None,
    since: datetime | None = None,
    limit: int,
) -> tuple[list[InvalidRow], bool]:
    """Up to ``limit`` rows in partition and offset order, and whether more match."""
    rows: list[InvalidRow] = []
    with HistoryReader(kafka) as reader, closing(_read(reader, topics, tenant_id, since)) as found:
        for record in found:
            if len(rows) == limit:
                return rows, True
            rows.append(record.row())
    return rows, False


@dataclass(frozen=True, slots=True)
class Skipped:
    """An invalid event not written to the export file, and why."""

    partition: int
    offset: int
    reason: str


@dataclass(slots=True)
class ExportReport:
    exported: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def _one_line(value: bytes) -> bytes | None:
    """``value`` as one line of a JSON-lines file, or ``None`` if it cannot be one."""
    if b"\n" not in value and b"\r" not in value:
        return value
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _original(reader: HistoryReader, record: _Invalid) -> bytes | None:
    """The input record a dead letter without its value stands for, if still there."""
    h = record.headers
    topic = h.get("qi.original.topic", "")
    partition, offset = h.get("qi.original.partition", ""), h.get("qi.original.offset", "")
    if not topic or not partition.isdigit() or not offset.isdigit():
        return None
    available = reader.span(topic, int(partition), from_offset=int(offset))
    span = OffsetSpan(topic, int(partition), available.start, min(available.end, int(offset) + 1))
    for message in reader.read(span):
        value = message.value() or b""
        if message.offset() == int(offset) and str(len(value)) == h.get("qi.original.value_bytes"):
            return value
    return None


def _create_private(path: Path) -> int:
    """A new file at ``path`` only its owner can read (``FileExistsError`` if it exists)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)  # whatever the umask
    return descriptor


def export_invalid(
    kafka: KafkaSettings,
    topics: TopicMap,
    *,
    tenant_id: str | None,
    out: Path,
    since: datetime | None = None,
) -> ExportReport:
    """Write the invalid events' values to ``out`` (created, ``0600``); see the module."""
    report = ExportReport()
    descriptor = _create_private(out)
    try:
        with os.fdopen(descriptor, "wb") as handle, HistoryReader(kafka) as reader:
            for record in list(_read(reader, topics, tenant_id, since)):
                value = record.value or _original(reader, record)
                if not value:
                    why = "no payload in the dead letter and the original record is gone"
                    report.skipped.append(Skipped(record.partition, record.offset, why))
                    continue
                line = _one_line(value)
                if line is None:
                    why = "the value spans lines and is not JSON: it cannot be one line"
                    report.skipped.append(Skipped(record.partition, record.offset, why))
                    continue
                handle.write(line + b"\n")
                report.exported += 1
    except BaseException:
        out.unlink(missing_ok=True)  # a partial file would pass for a complete one
        raise
    logger.info(
        "operations.invalid_events.exported",
        extra={"tenant_id": tenant_id, "exported": report.exported, "skipped": len(report.skipped)},
    )
    return report


@dataclass(frozen=True, slots=True)
class LineRefusal:
    """A line of a republish file that would be dead-lettered again (or is another tenant's)."""

    line: int
    reason: str
    detail: str


def check_lines(
    path: Path, *, max_event_bytes: int, max_line_bytes: int, tenant_id: str | None = None
) -> tuple[list[bytes], list[LineRefusal]]:
    """The file's event lines and the refusals of those the router would not route.

    Raises :class:`~processors.publishing.PublishError` for an unreadable file or a line over
    ``max_line_bytes``.
    """
    lines: list[bytes] = []
    refusals: list[LineRefusal] = []
    numbered = _numbered(path, max_line_bytes=max_line_bytes)
    for number, line in numbered:
        lines.append(line)
        key = tenant_key(line)
        try:
            event = parse_domain_event(key, line, max_bytes=max_event_bytes)
        except InvalidEventError as exc:
            refusals.append(LineRefusal(number, exc.reason.value, exc.detail))
            continue
        if tenant_id is not None and event.envelope.tenant_id != tenant_id:
            refusals.append(LineRefusal(number, "other_tenant", "tenant_id is not the one asked"))
    return lines, refusals


def _numbered(path: Path, *, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``iter_event_lines`` with each line's number in the file (blank lines count)."""
    wanted = iter(iter_event_lines(path, max_line_bytes=max_line_bytes))
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.rstrip(b"\r\n").strip():
                yield number, next(wanted)


@dataclass(slots=True)
class RepublishReport(SendReport):
    id_name: ClassVar[str] = "republish_id"
    refused: list[LineRefusal] = field(default_factory=list)

    @property
    def republish_id(self) -> str:
        return self.run_id

    def summary(self) -> dict[str, object]:
        """The last line of ``dlq republish --json``."""
        return {**SendReport.summary(self), "refused": len(self.refused)}


def republish(
    path: Path,
    *,
    kafka: KafkaSettings,
    topics: TopicMap,
    max_event_bytes: int,
    max_line_bytes: int,
    tenant_id: str | None = None,
    dry_run: bool,
) -> RepublishReport:
    """Check every line, then publish them all unless one is refused or it is a dry run."""
    lines, refusals = check_lines(
        path, max_event_bytes=max_event_bytes, max_line_bytes=max_line_bytes, tenant_id=tenant_id
    )
    report = RepublishReport(new_run_id("rb"), dry_run, matched=len(lines), refused=refusals)
    if dry_run or refusals:
        return report
    published = publish_lines(lines, kafka=kafka, topic=topics.domain_events)
    report.queued = published.published
    logger.info(
        "operations.invalid_events.republished",
        extra={"republish_id": report.republish_id, "published": report.queued},
    )
    return report
