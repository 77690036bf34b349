"""The inbound review queue and the bookmark marks, in Redis.

Keys, under ``QI_REDIS_KEY_PREFIX``, all ``tenant:{tenant}:*`` keys (so ``tenant purge``
removes them with the tenant's other keys):

- ``tenant:{tenant}:inreview``: hash ``review_id -> InboundReview JSON``;
- ``tenant:{tenant}:inreview:pending`` and ``tenant:{tenant}:inreview:done``: sorted sets of
  review ids by creation time (milliseconds), for listing pending reviews first;
- ``tenant:{tenant}:inreview:claim:{review_id}``: held (``SET NX``, :data:`CLAIM_SECONDS`)
  while one resolve produces the review's bookmark, so two concurrent resolves cannot both
  produce it;
- ``tenant:{tenant}:inbookmark:{bookmark_id}``: set (``SET NX``,
  :data:`BOOKMARK_MARK_SECONDS`) once the broker acknowledged the bookmark; a redelivered
  highlight finds it and produces nothing.

Exactly once, and where it stops: the mark is written only after the broker acknowledged the
bookmark, so a crash between the two produces the bookmark again on the next delivery, with
the same ``bookmark_id`` (derived from the ``inbound_id``). ``queast.bookmarks`` may so hold
two copies of one bookmark only after such a crash; its consumers deduplicate on
``bookmark_id``. A review is stored with ``HSETNX``: a redelivered highlight never resets a
review already decided.

Listing (:meth:`ReviewStore.page`): pending reviews first, oldest first, then decided ones,
newest first; the opaque cursor names the set and the rank to go on from. A review decided
between two pages moves from one set to the other and may be listed twice or not at all on
that walk (the next walk lists it).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from processors.inbound.models import InboundReview

__all__ = [
    "BOOKMARK_MARK_SECONDS",
    "CLAIM_SECONDS",
    "BookmarkMarks",
    "InvalidReviewCursorError",
    "ReviewPage",
    "ReviewStore",
]

BOOKMARK_MARK_SECONDS = 35 * 24 * 3600
"""How long a produced bookmark is remembered: longer than the intake's deduplication window
and than any redelivery of ``integrations.inbound`` a rebalance can cause."""
CLAIM_SECONDS = 60
"""How long a resolve may hold a review; a resolve that crashed frees it after this."""
_CURSOR_VERSION = "r1"
_STAGES = ("pending", "done")


class InvalidReviewCursorError(ValueError):
    """The cursor was not issued by :meth:`ReviewStore.page`."""


@dataclass(frozen=True, slots=True)
class ReviewPage:
    reviews: list[InboundReview]
    next_cursor: str | None


def _encode_cursor(stage: int, rank: int) -> str:
    raw = f"{_CURSOR_VERSION}:{stage}:{rank}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, stage_text, rank_text = raw.split(":")
        stage, rank = int(stage_text), int(rank_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidReviewCursorError(cursor) from None
    if version != _CURSOR_VERSION or not (0 <= stage < len(_STAGES) and 0 <= rank < 2**40):
        raise InvalidReviewCursorError(cursor)
    return stage, rank


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class BookmarkMarks:
    """Which bookmarks the broker already acknowledged."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _key(self, tenant_id: str, bookmark_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:inbookmark:{bookmark_id}"

    async def produced(self, tenant_id: str, bookmark_id: str) -> bool:
        return bool(await self._redis.exists(self._key(tenant_id, bookmark_id)))

    async def mark(self, tenant_id: str, bookmark_id: str) -> None:
        await self._redis.set(
            self._key(tenant_id, bookmark_id), b"1", nx=True, ex=BOOKMARK_MARK_SECONDS
        )


class ReviewStore:
    """The review queue of each tenant (see the module docstring)."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _hash(self, tenant_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:inreview"

    def _set(self, tenant_id: str, stage: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:inreview:{stage}"

    def _claim(self, tenant_id: str, review_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:inreview:claim:{review_id}"

    async def get(self, tenant_id: str, review_id: str) -> InboundReview | None:
        raw = await self._redis.hget(self._hash(tenant_id), review_id)
        return None if raw is None else InboundReview.model_validate_json(raw)

    async def add(self, review: InboundReview) -> bool:
        """Store a new pending review; ``False`` (and nothing changed) if it exists already."""
        added = await self._redis.hsetnx(
            self._hash(review.tenant_id), review.review_id, review.model_dump_json()
        )
        if not added:
            return False
        await self._redis.zadd(
            self._set(review.tenant_id, "pending"),
            {review.review_id: _millis(review.created_at)},
            nx=True,
        )
        return True

    async def claim(self, tenant_id: str, review_id: str) -> bool:
        """Hold ``review_id`` for one resolve; ``False`` if another holds it."""
        return bool(
            await self._redis.set(
                self._claim(tenant_id, review_id), b"1", nx=True, ex=CLAIM_SECONDS
            )
        )

    async def release(self, tenant_id: str, review_id: str) -> None:
        await self._redis.delete(self._claim(tenant_id, review_id))

    async def decide(self, review: InboundReview) -> None:
        """Store ``review`` as decided and move it to the decided set."""
        tenant_id = review.tenant_id
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._hash(tenant_id), review.review_id, review.model_dump_json())
        pipe.zrem(self._set(tenant_id, "pending"), review.review_id)
        pipe.zadd(
            self._set(tenant_id, "done"),
            {review.review_id: _millis(review.decided_at or review.created_at)},
        )
        await pipe.execute()

    async def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> ReviewPage:
        stage, rank = (0, 0) if cursor is None else _decode_cursor(cursor)
        reviews: list[InboundReview] = []
        while stage < len(_STAGES) and len(reviews) < limit:
            key = self._set(tenant_id, _STAGES[stage])
            want = limit - len(reviews)
            if _STAGES[stage] == "pending":
                ids = await self._redis.zrange(key, rank, rank + want - 1)
            else:
                ids = await self._redis.zrange(key, rank, rank + want - 1, desc=True)
            if ids:
                names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
                raws = await self._redis.hmget(self._hash(tenant_id), names)
                reviews.extend(
                    InboundReview.model_validate_json(raw) for raw in raws if raw is not None
                )
            rank += len(ids)
            if len(ids) < want:
                stage, rank = stage + 1, 0
        if stage >= len(_STAGES):
            return ReviewPage(reviews, None)
        return ReviewPage(reviews, _encode_cursor(stage, rank))
