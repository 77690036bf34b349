"""The accounting invariant of a run, read back from the topics and the receivers.

*Every consumed event is exported, dead-lettered or filtered; every export is delivered,
dead-lettered, skipped as stale or duplicate, or held, exactly once.*

After a run, :func:`account` reads (to their ends) the export topic of the webhook connector,
``integrations.dlq.invalid-events``, the connector's dead-letter topic and
``integrations.delivery-records``, and takes what the receivers recorded (every request with its
``webhook-id``, which is the export's idempotency key). It classifies:

- each published event: exported (an export carries its ``qi.event_id``), dead-lettered as
  invalid (the dead letter's payload names it), filtered (the test says so, by construction), or
  **lost**;
- each export (distinct idempotency key; a record re-routed after a crash is the same export):
  delivered (a receiver answered 2xx to its ``webhook-id``), dead-lettered, ``stale_skipped``,
  ``duplicate_skipped``, ``held_for_review``, held (its tenant is one the test lets wait, e.g. a
  hostile endpoint), or **unsettled**.

And it counts what must not happen: **duplicates** (2xx answers to one ``webhook-id`` beyond the
first), **stale_overwrites** (a 2xx for an entity version older than one the receiver had already
accepted for that entity), **conflicts** (an export both delivered and dead-lettered) and exports
recorded ``delivered`` more than once in ``integrations.delivery-records``.

The figures go to ``summary`` (a dict, JSON-ready), which tests write to a file under their tmp
dir and put in assertion messages.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.topics import TopicMap
from tests.sandboxes.webhook_receiver import ReceiverServer
from tests.support.kafka_io import ConsumedRecord, read_to_end

__all__ = ["Accounting", "Receipt", "account", "receiver_receipts"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """One request a receiver got: its ``webhook-id``, when, and whether it answered 2xx."""

    webhook_id: str
    received_at: float
    accepted: bool


@dataclass(frozen=True, slots=True)
class _Export:
    tenant_id: str
    entity: tuple[str, str, str]
    version: int


@dataclass
class Accounting:
    summary: dict[str, Any]
    lost_events: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    stale_overwrites: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    recorded_twice: list[str] = field(default_factory=list)

    def violations(self, *, allowed_duplicates: int = 0) -> list[str]:
        """What breaks the invariant; ``allowed_duplicates`` resends are tolerated (a SIGKILL
        can cut a worker between a receiver's 2xx and the record of it)."""
        found = []
        if self.lost_events:
            found.append(f"{len(self.lost_events)} events lost, e.g. {self.lost_events[:3]}")
        if self.unsettled:
            found.append(f"{len(self.unsettled)} exports unsettled, e.g. {self.unsettled[:3]}")
        if self.summary["duplicates"] > allowed_duplicates:
            found.append(
                f"{self.summary['duplicates']} duplicate deliveries "
                f"(allowed {allowed_duplicates}), e.g. {list(self.duplicated.items())[:3]}"
            )
        if self.stale_overwrites:
            found.append(
                f"{len(self.stale_overwrites)} stale overwrites, e.g. {self.stale_overwrites[:3]}"
            )
        if self.conflicts:
            found.append(f"{len(self.conflicts)} exports delivered and dead-lettered")
        return found

    def message(self, *, allowed_duplicates: int = 0) -> str:
        return f"{self.violations(allowed_duplicates=allowed_duplicates)}; figures {self.summary}"

    def write(self, path: Path) -> None:
        """The figures and the first offenders of each kind, as JSON."""
        path.write_text(
            json.dumps(
                {
                    "summary": self.summary,
                    "lost_events": self.lost_events[:50],
                    "unsettled": self.unsettled[:50],
                    "duplicated": dict(list(self.duplicated.items())[:50]),
                    "stale_overwrites": self.stale_overwrites[:50],
                    "conflicts": self.conflicts[:50],
                    "recorded_twice": self.recorded_twice[:50],
                },
                indent=2,
            )
        )


def _family(event_type: str) -> str:
    return event_type.split(".", maxsplit=1)[0]


def _exports(records: Iterable[ConsumedRecord]) -> tuple[dict[str, _Export], set[str], int]:
    exports: dict[str, _Export] = {}
    event_ids: set[str] = set()
    count = 0
    for record in records:
        count += 1
        h = record.headers
        key = h["qi.idempotency_key"]
        event_ids.add(h["qi.event_id"])
        exports[key] = _Export(
            tenant_id=h["qi.tenant_id"],
            entity=(h["qi.tenant_id"], _family(h["qi.event_type"]), h["qi.entity_id"]),
            version=int(h["qi.entity_version"]),
        )
    return exports, event_ids, count


def _invalid_event_ids(records: Iterable[ConsumedRecord]) -> tuple[set[str], int]:
    ids: set[str] = set()
    count = 0
    for record in records:
        count += 1
        try:
            event = json.loads(record.value or b"")
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            ids.add(event["event_id"])
    return ids, count


def account(
    *,
    bootstrap_servers: str,
    topics: TopicMap,
    partitions: int,
    published: Collection[Mapping[str, Any]],
    receipts: Iterable[Receipt],
    filtered: Collection[str] = (),
    held_tenants: Collection[str] = (),
    connector: str = "webhook",
) -> Accounting:
    """Classify every published event and every export of ``connector`` (see the module doc)."""
    export_records = read_to_end(bootstrap_servers, [topics.exports(connector)], partitions)
    exports, exported_events, export_copies = _exports(export_records)
    invalid_ids, invalid_count = _invalid_event_ids(
        read_to_end(bootstrap_servers, [topics.invalid_events], partitions)
    )
    dead = {
        r.headers.get("qi.idempotency_key", "")
        for r in read_to_end(bootstrap_servers, [topics.dlq(connector)], partitions)
    }
    statuses: dict[str, Counter[str]] = {}
    delivered_records: dict[str, list[str]] = {}
    for r in read_to_end(bootstrap_servers, [topics.delivery_records], partitions):
        record = json.loads(r.value or b"{}")
        statuses.setdefault(record["idempotency_key"], Counter())[record["status"]] += 1
        if record["status"] == "delivered":
            delivered_records.setdefault(record["idempotency_key"], []).append(
                f"attempt {record['attempt']} finished {record['finished_at']} "
                f"at {r.partition}:{r.offset}"
            )

    accepted: Counter[str] = Counter()
    by_entity: dict[tuple[str, str, str], list[tuple[float, int, str]]] = {}
    for receipt in receipts:
        if not receipt.accepted:
            continue
        accepted[receipt.webhook_id] += 1
        export = exports.get(receipt.webhook_id)
        if export is not None:
            by_entity.setdefault(export.entity, []).append(
                (receipt.received_at, export.version, receipt.webhook_id)
            )

    result = Accounting(summary={})
    filtered_ids = set(filtered)
    for event in published:
        event_id = str(event["event_id"])
        if not (event_id in exported_events or event_id in invalid_ids or event_id in filtered_ids):
            result.lost_events.append(event_id)

    outcomes: Counter[str] = Counter()
    for key, export in exports.items():
        seen = statuses.get(key, Counter())
        if accepted[key]:
            outcome = "delivered"
            if key in dead:
                result.conflicts.append(key)
        elif key in dead:
            outcome = "dead_lettered"
        elif seen["stale_skipped"]:
            outcome = "stale_skipped"
        elif seen["duplicate_skipped"]:
            outcome = "duplicate_skipped"
        elif seen["held_for_review"]:
            outcome = "held_for_review"
        elif export.tenant_id in held_tenants:
            outcome = "held"
        else:
            outcome = "unsettled"
            result.unsettled.append(key)
        outcomes[outcome] += 1
        if seen["delivered"] > 1:
            result.recorded_twice.append(f"{key}: {delivered_records.get(key)}")

    result.duplicated = {key: n for key, n in accepted.items() if n > 1}
    for entity, applied in by_entity.items():
        newest = -1
        for _at, version, key in sorted(applied):
            if version < newest:
                result.stale_overwrites.append(f"{entity}: v{version} after v{newest} ({key})")
            newest = max(newest, version)

    result.summary = {
        "consumed": len(published),
        "exported": len(exports),
        "export_records": export_copies,
        "filtered": len(filtered_ids),
        "dead_lettered_invalid": invalid_count,
        "delivered": outcomes["delivered"],
        "dead_lettered": outcomes["dead_lettered"],
        "stale_skipped": outcomes["stale_skipped"],
        "duplicate_skipped": outcomes["duplicate_skipped"],
        "held": outcomes["held"] + outcomes["held_for_review"],
        "unsettled": outcomes["unsettled"],
        "lost": len(result.lost_events),
        "duplicates": sum(n - 1 for n in result.duplicated.values()),
        "stale_overwrites": len(result.stale_overwrites),
        "conflicts": len(result.conflicts),
        "recorded_delivered_twice": len(result.recorded_twice),
    }
    return result


def receiver_receipts(receiver: ReceiverServer) -> list[Receipt]:
    """Every request the receiver recorded, on every endpoint, that carried a ``webhook-id``."""
    return [
        Receipt(d.webhook_id, d.received_at, d.delivered)
        for deliveries in receiver.all_received().values()
        for d in deliveries
        if d.webhook_id is not None
    ]
