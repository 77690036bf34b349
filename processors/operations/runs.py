"""The record of every operator run (replay now; dead-letter redrive and backfill reuse it).

A run is one Redis hash, ``run:{run_id}`` under ``QI_REDIS_KEY_PREFIX``
(:func:`~processors.deliveries.records.run_key`), holding what was asked (kind, tenant,
connector, window, event types, dry run, who asked), where it is (``queued``, ``running``,
``completed``, ``cancelled``, ``failed``, with the error) and its counts:

- ``matched``, ``queued``, ``duplicates``, ``malformed``: written by the run as it reads;
- a backfill (:mod:`.backfill`) writes ``matched``, ``exported`` (exports it appended, or would
  in a dry run), ``invalid`` and ``unrouted`` (events no connection takes today) instead of
  ``queued``/``duplicates``/``malformed``, and keeps its ``from_offset``; its ``connector`` is
  :data:`ALL_CONNECTORS` when it maps for every connection of the tenant. (``skipped`` is the
  delivery engine's counter, so a backfill's unrouted events have their own name.)
- ``delivered``, ``failed``, ``skipped``: counted by the delivery engine when it indexes a
  final delivery record of a copy carrying the run's id, once per delivery, in the same Redis
  round trip as the record index (:func:`~processors.deliveries.records.count_run_outcome`).

Every key of a run expires ``run_ttl_seconds`` after its last write (7 days by default), the
counters with it; a record of a copy delivered after its run expired counts nowhere.

Decisions:

- **One active run per tenant, connector and kind** (``tenant:{T}:run:active:{kind}:{C}``, the
  run id, taken atomically with the run's creation): a second run is *refused* with
  :class:`ActiveRunError`, naming the active run (the API answers 409, the CLI exits 1). A
  queue would re-deliver the same artifacts twice for an operator who pressed twice; refusing
  says so at once. A dry run sends nothing and takes no slot.
- **Heartbeat**: a running run writes ``heartbeat_at`` and renews its slot (which expires
  after ``heartbeat_stale_seconds``) between batches. A run whose process died (the API
  process restarted mid-run, a killed CLI) stops beating: reading it after that marks it
  ``failed`` ("stale: ..."), and its slot has expired, so a new run may start. The copies it
  had already queued are delivered as usual and still counted.
- **Cancel** sets ``cancel_requested``; the run checks it between batches of records read and
  ends ``cancelled`` (copies already queued stay queued: they are on the retry topic).
- **Rate** (:meth:`RunStore.take_rate_slot`): a sliding one-hour window per tenant and kind,
  a sorted set of start times, checked and taken in one script.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

from processors.deliveries.envelope import RUN_KINDS
from processors.deliveries.records import run_counted_key, run_key

__all__ = [
    "ACTIVE",
    "ALL_CONNECTORS",
    "ActiveRunError",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "new_run_id",
]

_RUN_ID_PREFIXES: Final = {"replay": "rp", "redrive": "rd", "release": "rl", "backfill": "bf"}


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALL_CONNECTORS: Final = "*"
"""The ``connector`` of a run over every connection of its tenant (a backfill without one)."""

ACTIVE: Final = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
"""Statuses of a run that has not ended."""


def new_run_id(kind: str) -> str:
    """A fresh run id (``rp_…`` for a replay); it matches ``reinject.RUN_ID``."""
    if kind not in RUN_KINDS:
        msg = f"unknown run kind {kind!r}"
        raise ValueError(msg)
    return f"{_RUN_ID_PREFIXES[kind]}_{uuid.uuid4().hex}"


class ActiveRunError(RuntimeError):
    """Another run of the same kind is active for the tenant and connector."""

    def __init__(self, active_run_id: str, *, kind: str, tenant_id: str, connector: str) -> None:
        super().__init__(
            f"a {kind} of tenant {tenant_id} on {connector} is already running: {active_run_id}"
            " (wait for it to end or cancel it)"
        )
        self.active_run_id = active_run_id


class RunRecord(BaseModel):
    """One operator run as stored (and as the API shows it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    kind: str
    tenant_id: str
    connector: str
    since: datetime | None = None
    until: datetime | None = None
    event_types: list[str] = Field(default_factory=list)
    status: RunStatus = RunStatus.QUEUED
    dry_run: bool = False
    requested_by: str = ""
    matched: int = 0
    queued: int = 0
    duplicates: int = 0
    malformed: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    exported: int = 0
    invalid: int = 0
    unrouted: int = 0
    from_offset: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    cancel_requested: bool = False
    error: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(values: Mapping[str, object]) -> dict[str, str]:
    """A run's fields as hash values (``None`` left out)."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = str(value)
    return out


# KEYS: run hash, active slot (or the run hash again when the run takes no slot)
# ARGV: run id, slot ttl ms, run ttl s, takes a slot ("1"/"0"), field, value, ...
_CREATE = """
if ARGV[4] == '1' then
  local holder = redis.call('GET', KEYS[2])
  if holder then return holder end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return false
"""
# KEYS: run hash, active slot; ARGV: run id, slot ttl ms, run ttl s, field, value, ...
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('PTTL', KEYS[1] .. ':counted') > 0 then
  redis.call('EXPIRE', KEYS[1] .. ':counted', ARGV[3])
end
if ARGV[2] == '0' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
elseif redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
# KEYS: the tenant's start times; ARGV: now ms, window ms, limit, member
_TAKE_RATE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1])
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return -1
"""


class RunStore:
    """Creates, updates, cancels and reads operator runs; see the module docstring."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        run_ttl_seconds: int = 7 * 86400,
        heartbeat_stale_seconds: float = 60.0,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._ttl = run_ttl_seconds
        self._stale = heartbeat_stale_seconds

    def _run(self, run_id: str) -> str:
        return run_key(self._prefix, run_id)

    def _slot(self, run: RunRecord) -> str:
        return f"{self._prefix}tenant:{run.tenant_id}:run:active:{run.kind}:{run.connector}"

    def _samples(self, run_id: str) -> str:
        return f"{self._prefix}run:{run_id}:samples"

    async def create(self, run: RunRecord) -> RunRecord:
        """Store a new run; a run that sends (not a dry run) takes its connection's slot.

        Raises :class:`ActiveRunError` naming the active run if the slot is taken.
        """
        takes_slot = not run.dry_run
        values = _fields(run.model_dump())
        holder = await self._redis.eval(
            _CREATE,
            2,
            self._run(run.run_id),
            self._slot(run) if takes_slot else self._run(run.run_id),
            run.run_id,
            int(self._stale * 1000),
            self._ttl,
            "1" if takes_slot else "0",
            *(item for pair in values.items() for item in pair),
        )
        if holder:
            active = holder.decode() if isinstance(holder, bytes) else str(holder)
            raise ActiveRunError(
                active, kind=run.kind, tenant_id=run.tenant_id, connector=run.connector
            )
        return run

    async def update(
        self, run: RunRecord, changes: Mapping[str, object], *, ended: bool = False
    ) -> RunRecord:
        """Write ``changes`` (and a heartbeat); ``ended`` releases the run's slot."""
        now = _now()
        values: dict[str, object] = {**changes, "heartbeat_at": now}
        if ended:
            values["finished_at"] = now
        slot_ttl = 0 if ended else int(self._stale * 1000)
        encoded = _fields(values)
        await self._redis.eval(
            _UPDATE,
            2,
            self._run(run.run_id),
            self._slot(run),
            run.run_id,
            slot_ttl,
            self._ttl,
            *(item for pair in encoded.items() for item in pair),
        )
        return run.model_copy(update=values)

    async def save_samples(self, run_id: str, samples: list[dict[str, object]]) -> None:
        """A dry run's sample payloads, kept one hour (they may hold personal data)."""
        if samples:
            await self._redis.set(self._samples(run_id), json.dumps(samples), ex=3600)

    async def samples(self, run_id: str) -> list[dict[str, object]]:
        raw = await self._redis.get(self._samples(run_id))
        if raw is None:
            return []
        loaded = json.loads(raw)
        return [s for s in loaded if isinstance(s, dict)] if isinstance(loaded, list) else []

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask an active run to stop; the run (as it is now), ``None`` if there is none."""
        run = await self.get(run_id)
        if run is None or run.status not in ACTIVE:
            return run
        await self._redis.hset(self._run(run_id), "cancel_requested", "1")
        return run.model_copy(update={"cancel_requested": True})

    async def cancel_requested(self, run_id: str) -> bool:
        flag = await self._redis.hget(self._run(run_id), "cancel_requested")
        return flag in (b"1", "1")

    async def get(self, run_id: str) -> RunRecord | None:
        """The run, ``None`` if unknown or expired; a run whose heartbeat stopped is marked
        failed here (see the module docstring)."""
        raw = await self._redis.hgetall(self._run(run_id))
        values: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
        if "run_id" not in values:
            return None  # unknown, expired, or counters of an expired run
        for flag in ("dry_run", "cancel_requested"):
            values[flag] = values.get(flag) == "1"
        values["event_types"] = json.loads(values.get("event_types", "[]"))
        try:
            run = RunRecord.model_validate(values)
        except ValidationError:
            return None
        beat = run.heartbeat_at or run.created_at
        if run.status in ACTIVE and (_now() - beat).total_seconds() > self._stale:
            error = f"stale: no heartbeat since {beat.isoformat()} (the process running it stopped)"
            changes = {"status": RunStatus.FAILED, "error": error}
            return await self.update(run, changes, ended=True)
        return run

    async def take_rate_slot(
        self, tenant_id: str, kind: str, *, per_hour: int, slot: str, now: float | None = None
    ) -> float | None:
        """Count a run start (``slot``, unique) against the tenant's hourly rate; ``None`` if
        allowed, else the seconds until a start is allowed again (nothing is counted then)."""
        at_ms = int((time.time() if now is None else now) * 1000)
        wait_ms = await self._redis.eval(
            _TAKE_RATE_SLOT,
            1,
            f"{self._prefix}tenant:{tenant_id}:run:rate:{kind}",
            at_ms,
            3_600_000,
            per_hour,
            slot,
        )
        return None if int(wait_ms) < 0 else max(1.0, int(wait_ms) / 1000)

    async def release_rate_slot(self, tenant_id: str, kind: str, *, slot: str) -> None:
        """Give back a start counted by :meth:`take_rate_slot` (the run was refused)."""
        await self._redis.zrem(f"{self._prefix}tenant:{tenant_id}:run:rate:{kind}", slot)

    async def delete(self, run_id: str) -> None:
        """Remove a run and its counters (tests, tenant purge)."""
        await self._redis.delete(
            self._run(run_id), run_counted_key(self._prefix, run_id), self._samples(run_id)
        )
