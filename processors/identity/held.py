"""Records held for a match review, remembered until a decision releases them.

A partner sink that cannot tell which partner object an entity is raises
``HeldForReviewError``: nothing is written to the partner and a review entry waits for a tenant
admin (:mod:`processors.identity.repository`). The delivery engine then *holds* the record
(:meth:`HeldStore.hold`) and acknowledges it; a review decision (confirm, link, unlink or
reject, :mod:`processors.identity.review`) *releases* what is held for that entity
(:mod:`processors.operations.release`), and a record held longer than its connector's age
budget is dead-lettered with reason ``review_timeout`` (:meth:`HeldStore.expire`).

Where a held record is kept. Its coordinates (``topic``, ``partition``, ``offset`` of the
export or retry copy it came from) are not enough to read it back: a record is often held from
the retry topic (its first try was deferred, or it came back from a retry), and the retry
topic keeps its records for hours, while a review may take days; the export topic's retention
is configurable too and may be shorter than a review. Writing the held copy to a topic
(``integrations.match-review``) would need the broker's offset back from the engine's produce
path and a topic read in the API at every decision. So the held record's value and envelope
are kept in the entry itself, next to the review entry in Redis, and its coordinates are kept
for the audit trail only. The copy lives exactly as long as the hold: it is deleted when the
decision releases it or when the age budget dead-letters it, so no personal data outlives the
review. It is bounded: at most :data:`MAX_HELD_PER_ENTITY` records per entity (versions and
event types of one entity wait on one review), the newest kept; an older version dropped that
way would be skipped by the stale-version guard after a newer one is delivered anyway (each
drop is logged as ``identity.held.superseded``). The same idempotency key held twice (a
released copy held again by a new review) is one entry, with the earliest hold time.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``idheld:{connection_id}:{kind}:{queast_id}``: list of :class:`HeldRecord` JSON, newest first;
- ``idheld:{connection_id}:{kind}:{queast_id}:releasing`` and ``...:release_id``: a release in
  progress (the list is renamed there atomically, with the release id), deleted once every copy
  is on the retry topic; a release that did not finish (the broker refused, the process died)
  is resumed, with the same release id, by the next decision on the entity;
- ``idheld:{connection_id}:{kind}:{queast_id}:lock``: taken while one release runs (with an
  expiry), so two concurrent decisions never release one list twice;
- ``idheld-due:{connector}``: sorted set of held entities by their oldest hold time, which the
  delivering connector's engine sweeps for records past their age budget.

Only the script that takes a list for release (:meth:`HeldStore.take`) moves it, and only the
expiry script (:meth:`HeldStore.expire`) removes entries past the budget, each atomically, so
a record is either released or dead-lettered, never both.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from processors.redis_client import RELEASE_IF_OWNER, reply_text

__all__ = [
    "MAX_HELD_PER_ENTITY",
    "HeldRecord",
    "HeldStore",
    "HeldSubject",
    "ReleaseError",
    "Released",
    "Releaser",
    "Taken",
]

logger = logging.getLogger(__name__)

MAX_HELD_PER_ENTITY: Final = 20
"""Records kept per held entity; the oldest beyond this are dropped (see the module doc)."""

_RELEASE_LOCK_MS: Final = 120_000
"""How long one release may hold an entity's lock before another may resume it."""

_HOLD = """
local key, due = KEYS[1], KEYS[2]
local entry, idem, limit, member, held_at = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do
  if cjson.decode(raw)['idempotency_key'] == idem then
    redis.call('LREM', key, 0, raw)
  end
end
redis.call('LPUSH', key, entry)
local dropped = redis.call('LLEN', key) - limit
if dropped > 0 then
  redis.call('LTRIM', key, 0, limit - 1)
else
  dropped = 0
end
redis.call('ZADD', due, 'LT', held_at, member)
return dropped
"""

_TAKE = """
local held, releasing, rid_key, lock, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local new_rid, lock_ms, member, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not redis.call('SET', lock, token, 'NX', 'PX', lock_ms) then
  return {'busy'}
end
local rid = redis.call('GET', rid_key)
if not rid then
  if redis.call('EXISTS', held) == 0 then
    redis.call('DEL', lock)
    return {}
  end
  redis.call('RENAME', held, releasing)
  redis.call('SET', rid_key, new_rid)
  redis.call('ZREM', due, member)
  rid = new_rid
end
local items = redis.call('LRANGE', releasing, 0, -1)
table.insert(items, 1, rid)
return items
"""

_FINISH = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return 1
"""


_EXPIRE = """
local key, due = KEYS[1], KEYS[2]
local cutoff, member = tonumber(ARGV[1]), ARGV[2]
local expired = {}
local oldest = nil
for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do
  local held_at = tonumber(cjson.decode(raw)['first_held_at_ms'])
  if held_at <= cutoff then
    table.insert(expired, raw)
    redis.call('LREM', key, 1, raw)
  elseif oldest == nil or held_at < oldest then
    oldest = held_at
  end
end
if oldest == nil then
  redis.call('ZREM', due, member)
else
  redis.call('ZADD', due, oldest, member)
end
return expired
"""


@dataclass(frozen=True, slots=True)
class HeldSubject:
    """The review a record waits for: one entity (``kind``, ``queast_id``) of a connection."""

    connection_id: str
    kind: str
    queast_id: str

    def member(self) -> str:
        """The subject as a member of the due index (JSON: ids may hold any character)."""
        return json.dumps([self.connection_id, self.kind, self.queast_id], separators=(",", ":"))

    @classmethod
    def from_member(cls, member: str | bytes) -> HeldSubject | None:
        try:
            connection_id, kind, queast_id = json.loads(member)
        except (ValueError, TypeError):
            return None
        if not all(isinstance(part, str) for part in (connection_id, kind, queast_id)):
            return None
        return cls(connection_id, kind, queast_id)


class HeldRecord(BaseModel):
    """One record held for a review: where it came from, and the record itself."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    connector: str = Field(description="The connector that delivers it (its topics).")
    connection_id: str
    kind: str
    queast_id: str
    idempotency_key: str
    delivery_id: str
    entity_version: int
    topic: str
    partition: int
    offset: int
    first_held_at_ms: int = Field(
        description="When it was first held (or first tried); its age budget counts from here."
    )
    value_b64: str = Field(description="The record's value (the encoded contract), base64.")
    headers: dict[str, str] = Field(description="The record's envelope (``qi.*`` headers).")

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    @property
    def subject(self) -> HeldSubject:
        return HeldSubject(self.connection_id, self.kind, self.queast_id)

    @classmethod
    def of(
        cls,
        *,
        subject: HeldSubject,
        value: bytes,
        headers: dict[str, str],
        topic: str,
        partition: int,
        offset: int,
        held_at_ms: int,
    ) -> HeldRecord:
        """A held record of ``value`` and its envelope ``headers`` for ``subject``."""
        return cls(
            tenant_id=headers["qi.tenant_id"],
            connector=headers["qi.connector"],
            connection_id=subject.connection_id,
            kind=subject.kind,
            queast_id=subject.queast_id,
            idempotency_key=headers["qi.idempotency_key"],
            delivery_id=headers["qi.delivery_id"],
            entity_version=int(headers["qi.entity_version"]),
            topic=topic,
            partition=partition,
            offset=offset,
            first_held_at_ms=held_at_ms,
            value_b64=base64.b64encode(value).decode(),
            headers=headers,
        )


@dataclass(frozen=True, slots=True)
class Taken:
    """Records taken for one release: its id, and the records (empty: nothing to release)."""

    release_id: str | None
    records: list[HeldRecord]
    token: str
    busy: bool = False
    """Another release of this entity runs now (it releases them; nothing was taken)."""


class ReleaseError(RuntimeError):
    """Held records could not be sent again (they stay taken for the next decision)."""


@dataclass(frozen=True, slots=True)
class Released:
    """What a decision released: how many records, under which release id (None: none)."""

    released: int
    release_id: str | None


class Releaser(Protocol):
    """Sends what is held for an entity again (:mod:`processors.operations.release`)."""

    async def release(
        self, subject: HeldSubject, *, connector: str, tenant_id: str, decision: str
    ) -> Released: ...


class HeldStore:
    """The held records of every connection, in Redis; see the module docstring."""

    def __init__(
        self, redis: Redis, *, key_prefix: str = "qi:", max_per_entity: int = MAX_HELD_PER_ENTITY
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._max = max_per_entity
        self._hold = redis.register_script(_HOLD)
        self._take = redis.register_script(_TAKE)
        self._finish = redis.register_script(_FINISH)
        self._unlock = redis.register_script(RELEASE_IF_OWNER)
        self._expire = redis.register_script(_EXPIRE)

    def _key(self, subject: HeldSubject) -> str:
        return f"{self._prefix}idheld:{subject.connection_id}:{subject.kind}:{subject.queast_id}"

    def _due(self, connector: str) -> str:
        return f"{self._prefix}idheld-due:{connector}"

    def keys(self, subject: HeldSubject, connector: str) -> list[str]:
        """Every key this store may write for ``subject`` (tests and purges)."""
        key = self._key(subject)
        return [key, f"{key}:releasing", f"{key}:release_id", f"{key}:lock", self._due(connector)]

    async def hold(self, record: HeldRecord) -> int:
        """Remember ``record`` (replacing an entry of the same key, keeping its earliest
        hold time). Returns how many older entries were dropped to stay within the bound."""
        key = self._key(record.subject)
        earlier = [
            HeldRecord.model_validate_json(raw).first_held_at_ms
            for raw in await self._redis.lrange(key, 0, -1)
            if json.loads(raw).get("idempotency_key") == record.idempotency_key
        ]
        if earlier:
            record = record.model_copy(
                update={"first_held_at_ms": min([*earlier, record.first_held_at_ms])}
            )
        dropped = int(
            await self._hold(
                keys=[key, self._due(record.connector)],
                args=[
                    record.model_dump_json(),
                    record.idempotency_key,
                    self._max,
                    record.subject.member(),
                    record.first_held_at_ms,
                ],
            )
        )
        if dropped:
            logger.warning(
                "identity.held.superseded",
                extra={
                    "tenant_id": record.tenant_id,
                    "connection_id": record.connection_id,
                    "kind": record.kind,
                    "dropped": dropped,
                },
            )
        return dropped

    async def held(self, subject: HeldSubject) -> list[HeldRecord]:
        """The records held for ``subject``, newest first (nothing is removed)."""
        raw = await self._redis.lrange(self._key(subject), 0, -1)
        return [HeldRecord.model_validate_json(item) for item in raw]

    async def take(self, subject: HeldSubject, *, release_id: str, connector: str) -> Taken:
        """Take the records held for ``subject`` for release ``release_id`` (atomically).

        Returns an unfinished earlier release's records with its own id instead, if there is
        one; nothing (``busy``) while another release of the entity runs. The caller sends
        them and then calls :meth:`finish` (or :meth:`abandon` if it could not).
        """
        key = self._key(subject)
        token = secrets.token_hex(8)
        raw = await self._take(
            keys=[
                key,
                f"{key}:releasing",
                f"{key}:release_id",
                f"{key}:lock",
                self._due(connector),
            ],
            args=[release_id, _RELEASE_LOCK_MS, subject.member(), token],
        )
        items = [reply_text(item) for item in raw]
        if items[:1] == ["busy"]:
            return Taken(None, [], token, busy=True)
        if not items:
            return Taken(None, [], token)
        records = [HeldRecord.model_validate_json(item) for item in items[1:]]
        return Taken(items[0], records, token)

    async def finish(self, subject: HeldSubject, taken: Taken) -> None:
        """Forget a release's records: every copy is on the retry topic."""
        key = self._key(subject)
        await self._finish(
            keys=[f"{key}:releasing", f"{key}:release_id", f"{key}:lock"], args=[taken.token]
        )

    async def abandon(self, subject: HeldSubject, taken: Taken) -> None:
        """Give a release's lock back; its records stay, for the next decision to resume."""
        await self._unlock(keys=[f"{self._key(subject)}:lock"], args=[taken.token])

    async def due(
        self, connector: str, *, older_than_ms: int, limit: int = 100
    ) -> list[HeldSubject]:
        """Entities of ``connector`` holding a record first held at or before ``older_than_ms``."""
        raw = await self._redis.zrangebyscore(
            self._due(connector), "-inf", older_than_ms, start=0, num=limit
        )
        subjects = [
            HeldSubject.from_member(member) for member in raw if isinstance(member, bytes | str)
        ]
        return [subject for subject in subjects if subject is not None]

    async def expire(
        self, subject: HeldSubject, *, connector: str, older_than_ms: int
    ) -> list[HeldRecord]:
        """Remove and return ``subject``'s records first held at or before ``older_than_ms``."""
        raw = await self._expire(
            keys=[self._key(subject), self._due(connector)],
            args=[older_than_ms, subject.member()],
        )
        return [HeldRecord.model_validate_json(reply_text(item)) for item in raw]
