"""Deciding inbound reviews: list them, resolve one to a company (one bookmark), or reject it.

Used by the review API (:mod:`processors.inbound.reviews_api`). Resolving creates the
highlight's bookmark exactly once, whatever the number of calls:

1. the review must exist for the tenant (404 ``review_not_found``) and the company must be a
   live company of the tenant's directory (400 ``unknown_company``);
2. a review already resolved answers its bookmark again when asked for the same company (200,
   nothing produced) and 409 ``review_already_decided`` for another company or after a
   rejection;
3. otherwise the resolve claims the review (``SET NX`` with a timeout; a concurrent resolve
   gets 409 ``review_in_progress``), produces the bookmark unless its mark says it was
   produced, waits for the broker's acknowledgement (503 ``kafka_unavailable`` if it does
   not come), writes the mark, stores the review as resolved with its bookmark, and releases
   the claim.

The bookmark has the id every copy of that highlight has (derived from its ``inbound_id``), the
strategy ``manual`` with confidence 1.0, the review's candidates, and the deciding admin's
``sub``. A crash after the broker's acknowledgement and before the mark can produce the same
bookmark (same id) again on the next resolve; consumers deduplicate on ``bookmark_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from processors.errors import BadRequest, Conflict, found
from processors.inbound.directory import CompanyDirectory
from processors.inbound.models import Bookmark, BookmarkMatch, InboundReview, ReviewStatus
from processors.inbound.reviews import BookmarkMarks, ReviewPage, ReviewStore

__all__ = ["InboundReviewService", "ProduceBookmark"]

logger = logging.getLogger(__name__)

ProduceBookmark = Callable[[Bookmark], Awaitable[None]]
"""Produces one bookmark and returns once the broker acknowledged it (raises
:class:`processors.errors.ServiceUnavailable` when it does not)."""


def _in_progress() -> Conflict:
    return Conflict("another decision on this review is in progress", code="review_in_progress")


def _now() -> datetime:
    return datetime.now(UTC)


class InboundReviewService:
    def __init__(
        self,
        *,
        store: ReviewStore,
        directory: CompanyDirectory,
        marks: BookmarkMarks,
        produce: ProduceBookmark,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._store = store
        self._directory = directory
        self._marks = marks
        self._produce = produce
        self._clock = clock

    async def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> ReviewPage:
        return await self._store.page(tenant_id, limit=limit, cursor=cursor)

    async def _review(self, tenant_id: str, review_id: str) -> InboundReview:
        review = await self._store.get(tenant_id, review_id)
        return found(review, "no such review for this tenant", code="review_not_found")

    async def resolve(
        self, tenant_id: str, review_id: str, company_id: str, *, decided_by: str
    ) -> InboundReview:
        review = await self._review(tenant_id, review_id)
        if review.status is not ReviewStatus.PENDING:
            return _resolved_to(review, company_id)
        if await self._directory.get(tenant_id, company_id) is None:
            raise BadRequest(
                "the company is not one of the tenant's companies", code="unknown_company"
            )

        async def resolve(pending: InboundReview) -> InboundReview:
            bookmark = Bookmark.of(
                pending.event,
                company_id,
                BookmarkMatch(
                    strategy="manual",
                    confidence=1.0,
                    candidates=pending.candidates,
                    decided_by=decided_by,
                ),
            )
            if not await self._marks.produced(tenant_id, bookmark.bookmark_id):
                await self._produce(bookmark)
                await self._marks.mark(tenant_id, bookmark.bookmark_id)
            return self._decided(pending, ReviewStatus.RESOLVED, decided_by, bookmark=bookmark)

        return await self._decide(
            (tenant_id, review_id),
            resolve,
            lambda done: _resolved_to(done, company_id),
            "inbound.review.resolved",
        )

    async def reject(self, tenant_id: str, review_id: str, *, decided_by: str) -> InboundReview:
        review = await self._review(tenant_id, review_id)
        if review.status is not ReviewStatus.PENDING:
            return _rejected(review)

        async def reject(pending: InboundReview) -> InboundReview:
            return self._decided(pending, ReviewStatus.REJECTED, decided_by)

        return await self._decide(
            (tenant_id, review_id), reject, _rejected, "inbound.review.rejected"
        )

    async def _decide(
        self,
        ids: tuple[str, str],
        decide: Callable[[InboundReview], Awaitable[InboundReview]],
        already: Callable[[InboundReview], InboundReview],
        event: str,
    ) -> InboundReview:
        """Under the review's claim: read it again and, still pending, store what ``decide``
        makes of it (logged as ``event``); decided meanwhile, answer ``already`` of it.
        ``ids`` are the tenant's and the review's."""
        tenant_id, review_id = ids
        if not await self._store.claim(tenant_id, review_id):
            raise _in_progress()
        try:
            review = await self._review(tenant_id, review_id)
            if review.status is not ReviewStatus.PENDING:
                return already(review)
            decided = await decide(review)
            await self._store.decide(decided)
        finally:
            await self._store.release(tenant_id, review_id)
        logger.info(event, extra={"tenant_id": tenant_id})
        return decided

    def _decided(
        self,
        review: InboundReview,
        status: ReviewStatus,
        decided_by: str,
        bookmark: Bookmark | None = None,
    ) -> InboundReview:
        return review.model_copy(
            update={
                "status": status,
                "decided_at": self._clock(),
                "decided_by": decided_by,
                "bookmark": bookmark,
            }
        )


def _resolved_to(review: InboundReview, company_id: str) -> InboundReview:
    """A decided review, when it was resolved to ``company_id``; else 409."""
    if (
        review.status is ReviewStatus.RESOLVED
        and review.bookmark is not None
        and review.bookmark.company_id == company_id
    ):
        return review
    raise Conflict("the review was already decided", code="review_already_decided")


def _rejected(review: InboundReview) -> InboundReview:
    """A decided review, when it was rejected; else (resolved) 409."""
    if review.status is ReviewStatus.REJECTED:
        return review
    raise Conflict("the review was already resolved", code="review_already_decided")
