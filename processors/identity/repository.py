"""The identity mapping store in Redis, per tenant connection and entity kind.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``idmap:{connection_id}:{kind}``: hash ``queast_id -> IdentityLink JSON`` (the link with its
  provenance);
- ``idmap:{connection_id}:{kind}:partner``: hash ``partner_object_id -> queast_id`` (lookup the
  other way; one partner object belongs to at most one Queast entity);
- ``idreview:{connection_id}``: hash ``{kind}:{queast_id} -> ReviewEntry JSON``, the ambiguous
  matches waiting for a tenant admin;
- ``idreject:{connection_id}``: hash ``{kind}:{queast_id} -> JSON list of partner object ids``
  a tenant admin rejected for that entity (:meth:`IdentityRepository.reject`); the resolver
  never offers them again, so an entity whose every candidate was rejected is created anew;
- ``idwait:{connection_id}:{company_queast_id}``: set of person Queast ids written to the
  partner before their company was linked, so without their association. Whichever side comes
  second writes the association: a person adds itself here *then* looks for the company's
  link; a company stores its link *then* reads this set. With both writing before reading, no
  interleaving of the two leaves a person unassociated (both may write it; associating is
  idempotent in both partners). Members are removed only after the association is written.

Listing for the API (:meth:`IdentityRepository.match_page`) never reads a whole hash: it walks
the company links, the person links and the review entries, in that order, with ``HSCAN``, and
hands back an opaque cursor (the hash and its ``HSCAN`` position). A page holds about ``limit``
entries (``HSCAN``'s ``COUNT`` is a hint; a page may hold a few more, or fewer, even none, with
a cursor still to follow) and at most :data:`MAX_SCANS_PER_PAGE` scan calls are made per page.
Entries come in storage order (sorted by time within a page only). As with any ``HSCAN``, an
entry present from the first page to the last is listed at least once; one written or removed
meanwhile may be listed or not, and one may be listed twice.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

__all__ = [
    "MAX_SCANS_PER_PAGE",
    "IdentityLink",
    "IdentityRepository",
    "InvalidMatchCursorError",
    "LinkHow",
    "LinkState",
    "MatchPage",
    "MatchRef",
    "ReviewEntry",
]

MAX_SCANS_PER_PAGE = 10
"""``HSCAN`` calls one page may make (scans that find nothing still end the page then)."""

_CURSOR_VERSION = "m1"
_STAGES = ("company", "person", "reviews")
_MAX_SCAN_POSITION = 2**64


class InvalidMatchCursorError(ValueError):
    """The cursor was not issued by :meth:`IdentityRepository.match_page`."""


@dataclass(frozen=True, slots=True)
class MatchPage:
    links: list[IdentityLink]
    reviews: list[ReviewEntry]
    next_cursor: str | None


def _encode_cursor(stage: int, position: int) -> str:
    raw = f"{_CURSOR_VERSION}:{stage}:{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, stage_text, position_text = raw.split(":")
        stage, position = int(stage_text), int(position_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidMatchCursorError(cursor) from None
    if version != _CURSOR_VERSION or not (
        0 <= stage < len(_STAGES) and 0 <= position < _MAX_SCAN_POSITION
    ):
        raise InvalidMatchCursorError(cursor)
    return stage, position


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


class LinkHow(TypedDict):
    """How a link came to be: the :class:`IdentityLink` fields :meth:`MatchRef.link` takes."""

    state: LinkState
    strategy: str
    confidence: float
    explanation: str
    decided_by: NotRequired[str | None]


@dataclass(frozen=True, slots=True)
class MatchRef:
    """One Queast entity (``kind``, ``queast_id``) of one tenant connection."""

    tenant_id: str
    connection_id: str
    kind: str
    queast_id: str

    def link(self, partner_object_id: str, **how: Unpack[LinkHow]) -> IdentityLink:
        """A link of this entity to ``partner_object_id``, matched now."""
        return IdentityLink(**asdict(self), partner_object_id=partner_object_id, **how)


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

    def _rejected(self, connection_id: str) -> str:
        return f"{self._prefix}idreject:{connection_id}"

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

    async def review(self, connection_id: str, kind: str, queast_id: str) -> ReviewEntry | None:
        raw = await self._redis.hget(self._reviews(connection_id), f"{kind}:{queast_id}")
        return None if raw is None else ReviewEntry.model_validate_json(raw)

    async def match_page(
        self, connection_id: str, *, limit: int, cursor: str | None = None
    ) -> MatchPage:
        """About ``limit`` links and review entries from ``cursor`` on (see the module doc).

        Raises :class:`InvalidMatchCursorError` for a cursor this method did not issue.
        """
        stage, position = (0, 0) if cursor is None else _decode_cursor(cursor)
        links: list[IdentityLink] = []
        reviews: list[ReviewEntry] = []
        for _ in range(MAX_SCANS_PER_PAGE):
            if stage >= len(_STAGES) or len(links) + len(reviews) >= limit:
                break
            kind = _STAGES[stage]
            key = (
                self._reviews(connection_id)
                if kind == "reviews"
                else self._links(connection_id, kind)
            )
            position, found = await self._redis.hscan(
                key, position, count=limit - len(links) - len(reviews)
            )
            values = found.values() if isinstance(found, dict) else ()  # a list: keys only
            if kind == "reviews":
                reviews.extend(ReviewEntry.model_validate_json(v) for v in values)
            else:
                links.extend(IdentityLink.model_validate_json(v) for v in values)
            if position == 0:
                stage += 1
        links.sort(key=lambda link: link.matched_at)
        reviews.sort(key=lambda entry: entry.created_at)
        next_cursor = None if stage >= len(_STAGES) else _encode_cursor(stage, position)
        return MatchPage(links=links, reviews=reviews, next_cursor=next_cursor)

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

    async def reject(self, connection_id: str, kind: str, queast_id: str) -> ReviewEntry | None:
        """Reject the entity's review: none of its candidates is this entity.

        Removes the review entry and remembers its candidates as rejected (added to any
        rejected before); returns the entry, or ``None`` if there was none (nothing changed).
        """
        entry = await self.review(connection_id, kind, queast_id)
        if entry is None:
            return None
        field = f"{kind}:{queast_id}"
        ids = set(await self.rejected(connection_id, kind, queast_id))
        ids.update(
            str(c["partner_object_id"]) for c in entry.candidates if "partner_object_id" in c
        )
        if entry.best_candidate_id is not None:
            ids.add(entry.best_candidate_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._rejected(connection_id), field, json.dumps(sorted(ids)))
        pipe.hdel(self._reviews(connection_id), field)
        await pipe.execute()
        return entry

    async def rejected(self, connection_id: str, kind: str, queast_id: str) -> list[str]:
        """The partner objects a tenant admin rejected for the entity (sorted)."""
        raw = await self._redis.hget(self._rejected(connection_id), f"{kind}:{queast_id}")
        if raw is None:
            return []
        ids = json.loads(raw)
        return sorted(str(i) for i in ids) if isinstance(ids, list) else []

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
