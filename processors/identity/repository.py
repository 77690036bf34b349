"""The identity mapping store in Redis, per tenant connection and entity kind.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``idmap:{connection_id}:{kind}``: hash ``queast_id -> IdentityLink JSON`` (the link with its
  provenance);
- ``idmap:{connection_id}:{kind}:partner``: hash ``partner_object_id -> queast_id`` (lookup the
  other way; one partner object belongs to at most one Queast entity);
- ``idreview:{connection_id}``: hash ``{kind}:{queast_id} -> ReviewEntry JSON``, the ambiguous
  matches waiting for a tenant admin;
- ``idwait:{connection_id}:{company_queast_id}``: set of person Queast ids written to the
  partner before their company was linked, so without their association. Whichever side comes
  second writes the association: a person adds itself here *then* looks for the company's
  link; a company stores its link *then* reads this set. With both writing before reading, no
  interleaving of the two leaves a person unassociated (both may write it; associating is
  idempotent in both partners). Members are removed only after the association is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

__all__ = ["IdentityLink", "IdentityRepository", "LinkState", "ReviewEntry"]


class LinkState(StrEnum):
    AUTO_LINKED = "auto_linked"
    CONFIRMED = "confirmed"
    CREATED = "created"


def _now() -> datetime:
    return datetime.now(UTC)


class IdentityLink(BaseModel):
    """Queast entity <-> partner object, with how the link came to be."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    connection_id: str
    kind: str
    queast_id: str
    partner_object_id: str
    state: LinkState
    strategy: str
    confidence: float = Field(ge=0, le=1)
    matched_at: datetime = Field(default_factory=_now)
    decided_by: str | None = None
    explanation: str = ""


class ReviewEntry(BaseModel):
    """An ambiguous match: the candidates and why no link was made."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    connection_id: str
    kind: str
    queast_id: str
    best_candidate_id: str | None
    confidence: float
    strategy: str | None
    explanation: str
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=_now)


class IdentityRepository:
    def __init__(self, redis: Redis, *, key_prefix: str = "qi:") -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _links(self, connection_id: str, kind: str) -> str:
        return f"{self._prefix}idmap:{connection_id}:{kind}"

    def _partner(self, connection_id: str, kind: str) -> str:
        return f"{self._prefix}idmap:{connection_id}:{kind}:partner"

    def _reviews(self, connection_id: str) -> str:
        return f"{self._prefix}idreview:{connection_id}"

    def _waiting(self, connection_id: str, company_id: str) -> str:
        return f"{self._prefix}idwait:{connection_id}:{company_id}"

    async def get(self, connection_id: str, kind: str, queast_id: str) -> IdentityLink | None:
        raw = await self._redis.hget(self._links(connection_id, kind), queast_id)
        return None if raw is None else IdentityLink.model_validate_json(raw)

    async def by_partner(self, connection_id: str, kind: str, partner_id: str) -> str | None:
        raw = await self._redis.hget(self._partner(connection_id, kind), partner_id)
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    async def put(self, link: IdentityLink) -> None:
        """Store a link (replacing the entity's previous one) and clear its review entry."""
        previous = await self.get(link.connection_id, link.kind, link.queast_id)
        pipe = self._redis.pipeline(transaction=True)
        if previous is not None and previous.partner_object_id != link.partner_object_id:
            pipe.hdel(self._partner(link.connection_id, link.kind), previous.partner_object_id)
        pipe.hset(
            self._links(link.connection_id, link.kind), link.queast_id, link.model_dump_json()
        )
        pipe.hset(
            self._partner(link.connection_id, link.kind), link.partner_object_id, link.queast_id
        )
        pipe.hdel(self._reviews(link.connection_id), f"{link.kind}:{link.queast_id}")
        await pipe.execute()

    async def unlink(self, connection_id: str, kind: str, queast_id: str) -> bool:
        link = await self.get(connection_id, kind, queast_id)
        if link is None:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self._links(connection_id, kind), queast_id)
        pipe.hdel(self._partner(connection_id, kind), link.partner_object_id)
        await pipe.execute()
        return True

    async def links(self, connection_id: str, kind: str) -> list[IdentityLink]:
        raw = await self._redis.hgetall(self._links(connection_id, kind))
        return sorted(
            (IdentityLink.model_validate_json(v) for v in raw.values()),
            key=lambda link: link.matched_at,
        )

    async def add_review(self, entry: ReviewEntry) -> None:
        await self._redis.hset(
            self._reviews(entry.connection_id),
            f"{entry.kind}:{entry.queast_id}",
            entry.model_dump_json(),
        )

    async def reviews(self, connection_id: str) -> list[ReviewEntry]:
        raw = await self._redis.hgetall(self._reviews(connection_id))
        return sorted(
            (ReviewEntry.model_validate_json(v) for v in raw.values()),
            key=lambda entry: entry.created_at,
        )

    # -- people written before their company was linked ---------------------------------------

    async def add_waiting(self, connection_id: str, company_id: str, person_id: str) -> None:
        """Remember that ``person_id`` was written without its association to ``company_id``."""
        await self._redis.sadd(self._waiting(connection_id, company_id), person_id)

    async def waiting(self, connection_id: str, company_id: str) -> list[str]:
        """People still waiting for ``company_id``'s link (sorted; nothing is removed)."""
        raw = await self._redis.smembers(self._waiting(connection_id, company_id))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)

    async def done_waiting(
        self, connection_id: str, company_id: str, person_ids: list[str]
    ) -> None:
        """Forget people whose association to ``company_id`` has been written."""
        if person_ids:
            await self._redis.srem(self._waiting(connection_id, company_id), *person_ids)
