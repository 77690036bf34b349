"""The Redis query index of delivery records (the topic is the durable copy).

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``drec:{record_id}``: the record's JSON, expiring after the retention period;
- ``tenant:{tenant_id}:drec``: a sorted set of the tenant's record ids by finish time (ms);
- ``tenant:{tenant_id}:drec:status:{status}``, ``...:event_type:{type}``,
  ``...:event:{event_id}``: the same, per filter value.

A query walks the most selective index that its filters name (event id, then status, then
event type, then all), newest first, within the time range, and checks the other filters on
the records themselves. Pages are cut by an opaque cursor (score and id of the last record
returned), so new records arriving between pages never shift them. Index entries older than
the retention period are trimmed as new ones are added.

An operator run's counters (``run:{run_id}``, see :mod:`processors.operations.runs`) are
counted in the same round trip: :func:`count_run_outcome` adds each final record of a copy
with a ``replay_id`` to its run, once per delivery id, only while the run's record exists (its
counters expire with it).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from processors.deliveries.models import DeliveryRecord, DeliveryStatus

__all__ = [
    "DeliveryRecordIndex",
    "DeliveryRecordPage",
    "InvalidCursorError",
    "count_run_outcome",
    "record_id",
    "run_counted_key",
    "run_key",
]

_SCAN_CHUNK = 200
_MAX_SCANNED = 20_000


def run_key(key_prefix: str, run_id: str) -> str:
    """The Redis hash of an operator run (its record and its counters)."""
    return f"{key_prefix}run:{run_id}"


def run_counted_key(key_prefix: str, run_id: str) -> str:
    """The delivery ids already counted in a run's counters (each counts once)."""
    return f"{key_prefix}run:{run_id}:counted"


_RUN_OUTCOMES = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.DEAD_LETTERED: "failed",
    DeliveryStatus.STALE_SKIPPED: "skipped",
    DeliveryStatus.DUPLICATE_SKIPPED: "skipped",
}
# KEYS: run hash, counted set; ARGV: delivery id, counter. Counts a delivery once, and only
# while the run exists; the counted set expires with the run.
_COUNT_RUN_OUTCOME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return 1
"""


def count_run_outcome(pipe: Pipeline, key_prefix: str, record: DeliveryRecord) -> None:
    """Count ``record`` in its run's counters if it is a run copy's final outcome."""
    counter = _RUN_OUTCOMES.get(record.status)
    if record.replay_id is None or counter is None:
        return
    keys = (run_key(key_prefix, record.replay_id), run_counted_key(key_prefix, record.replay_id))
    pipe.eval(_COUNT_RUN_OUTCOME, 2, *keys, record.delivery_id, counter)


class InvalidCursorError(ValueError):
    """The cursor was not produced by this index."""


def record_id(record: DeliveryRecord) -> str:
    """Unique per attempt outcome of one delivery."""
    return f"{record.delivery_id}:{record.attempt}:{record.status.value}"


@dataclass(frozen=True, slots=True)
class DeliveryRecordPage:
    items: list[DeliveryRecord]
    next_cursor: str | None


def _encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, member]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, member = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidCursorError("cursor is not valid") from exc
    if not isinstance(score, int | float) or not isinstance(member, str):
        raise InvalidCursorError("cursor is not valid")
    if not math.isfinite(score):
        raise InvalidCursorError("cursor is not valid")
    return float(score), member


def _member(entry: object) -> tuple[str, float]:
    if not isinstance(entry, tuple | list) or len(entry) != 2:
        msg = "unexpected sorted-set reply"
        raise TypeError(msg)
    raw, score = entry
    return (raw.decode() if isinstance(raw, bytes) else str(raw)), float(score)


def _ms(value: datetime) -> float:
    return value.timestamp() * 1000


class DeliveryRecordIndex:
    """Writes and queries the delivery-record index of every tenant."""

    def __init__(
        self, redis: Redis, *, key_prefix: str = "qi:", retention_seconds: int = 30 * 86400
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._retention = retention_seconds

    def _record_key(self, rid: str) -> str:
        return f"{self._prefix}drec:{rid}"

    def _index(self, tenant_id: str, kind: str | None = None, value: str | None = None) -> str:
        base = f"{self._prefix}tenant:{tenant_id}:drec"
        return base if kind is None else f"{base}:{kind}:{value}"

    async def add_many(self, records: Sequence[DeliveryRecord]) -> None:
        """Index records in one pipelined round trip."""
        if not records:
            return
        pipe = self._redis.pipeline(transaction=False)
        for record in records:
            rid = record_id(record)
            score = _ms(record.finished_at)
            pipe.set(self._record_key(rid), record.model_dump_json(), ex=self._retention)
            for key in (
                self._index(record.tenant_id),
                self._index(record.tenant_id, "status", record.status.value),
                self._index(record.tenant_id, "event_type", record.event_type),
                self._index(record.tenant_id, "event", record.event_id),
            ):
                pipe.zadd(key, {rid: score})
                pipe.zremrangebyscore(key, "-inf", score - self._retention * 1000)
                pipe.expire(key, self._retention)
            count_run_outcome(pipe, self._prefix, record)
        await pipe.execute()

    async def query(
        self,
        tenant_id: str,
        *,
        status: DeliveryStatus | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryRecordPage:
        """Newest first. Raises :class:`InvalidCursorError` for a cursor it did not issue."""
        if event_id is not None:
            index = self._index(tenant_id, "event", event_id)
        elif status is not None:
            index = self._index(tenant_id, "status", status.value)
        elif event_type is not None:
            index = self._index(tenant_id, "event_type", event_type)
        else:
            index = self._index(tenant_id)
        high: float | str = "+inf" if until is None else _ms(until)
        low: float | str = "-inf" if since is None else _ms(since)
        after: tuple[float, str] | None = None
        if cursor is not None:
            after = _decode_cursor(cursor)
            high = after[0]
        items: list[DeliveryRecord] = []
        last: tuple[float, str] | None = None
        offset = 0
        scanned = 0
        while len(items) < limit and scanned < _MAX_SCANNED:
            chunk = await self._redis.zrevrangebyscore(
                index, high, low, start=offset, num=_SCAN_CHUNK, withscores=True
            )
            if not chunk:
                break
            offset += len(chunk)
            scanned += len(chunk)
            members = [_member(entry) for entry in chunk]
            if after is not None:
                members = [
                    (m, s) for m, s in members if s < after[0] or (s == after[0] and m < after[1])
                ]
            if not members:
                continue
            raw = await self._redis.mget([self._record_key(m) for m, _ in members])
            for (member, score), value in zip(members, raw, strict=True):
                if value is None:
                    continue
                record = DeliveryRecord.model_validate_json(value)
                if status is not None and record.status is not status:
                    continue
                if event_type is not None and record.event_type != event_type:
                    continue
                items.append(record)
                last = (score, member)
                if len(items) == limit:
                    break
        more = len(items) == limit and last is not None
        return DeliveryRecordPage(
            items=items, next_cursor=_encode_cursor(*last) if more and last else None
        )
