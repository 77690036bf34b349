"""Publishing domain events from JSON-lines files (``queast-integrations publish``).

Each non-empty line is sent as it is, as the record value. The key is the line's ``tenant_id``
when the line is a JSON object with a string ``tenant_id``; otherwise the record has no key, and
the router dead-letters it (the command still publishes it: it is how tests and the demo feed
bad input). Lines longer than ``max_line_bytes`` are refused by the command, not truncated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, Message

from processors.kafka import producer
from processors.settings import KafkaSettings

__all__ = ["PublishError", "PublishReport", "iter_event_lines", "publish_lines", "tenant_key"]


class PublishError(RuntimeError):
    """The file cannot be published (unreadable, a line too long, the broker refused)."""


@dataclass(slots=True)
class PublishReport:
    """Counts of one ``publish`` run."""

    published: int = 0
    without_key: int = 0
    failed: int = 0


def tenant_key(line: bytes) -> bytes | None:
    """The record key for a line: its tenant id, or ``None`` when it has none."""
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None
    tenant = document.get("tenant_id") if isinstance(document, dict) else None
    return tenant.encode() if isinstance(tenant, str) and tenant else None


def iter_event_lines(path: Path, *, max_line_bytes: int) -> Iterator[bytes]:
    """Non-empty lines of ``path`` without their line ends."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise PublishError(msg) from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            if len(line) > max_line_bytes:
                msg = f"{path}:{number}: line is {len(line)} bytes, limit {max_line_bytes}"
                raise PublishError(msg)
            yield line


def publish_lines(
    lines: Iterable[bytes],
    *,
    kafka: KafkaSettings,
    topic: str,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Produce every line, keyed by tenant, and wait until the broker acknowledged all."""
    report = PublishReport()
    client = producer(kafka)

    def _delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            report.published += 1
        else:
            report.failed += 1

    for count, line in enumerate(lines, start=1):
        key = tenant_key(line)
        if key is None:
            report.without_key += 1
        while True:
            try:
                client.produce(topic, value=line, key=key, on_delivery=_delivered)
                break
            except BufferError:
                client.poll(0.1)
        client.poll(0)
        if on_progress is not None and count % 1000 == 0:
            on_progress(count)
    remaining = client.flush(60)
    if remaining or report.failed:
        msg = f"{report.failed} record(s) refused and {remaining} unacknowledged by the broker"
        raise PublishError(msg)
    return report
