"""Match review: the decisions a tenant admin makes on a connection's links.

:class:`MatchReviewService` is what the match-review API (:mod:`processors.tenants.matches`)
calls; it works on one connection's identity store (:class:`IdentityRepository`), by
``connection_id``. Finding the connection of a tenant and connector is the caller's business:
the identity package never imports the tenants package (the dependency goes the other way:
a connection's settings carry its identity match policy, :mod:`processors.identity.resolver`).

- :meth:`~MatchReviewService.page` lists links (auto-linked ones included) and reviews;
- :meth:`~MatchReviewService.confirm` turns an auto-linked match, or the best candidate of a
  review entry, into a confirmed link recorded with the decider;
- :meth:`~MatchReviewService.link` links (or relinks) an entity by hand;
- :meth:`~MatchReviewService.unlink` removes a link.

A missing link or review entry is :class:`~processors.errors.NotFound` ``match_not_found``; a
cursor the listing did not issue is :class:`~processors.errors.BadRequest` ``invalid_cursor``.
"""

from __future__ import annotations

from processors.errors import BadRequest, NotFound
from processors.identity.repository import (
    IdentityLink,
    IdentityRepository,
    InvalidMatchCursorError,
    LinkState,
    MatchPage,
    MatchRef,
)

__all__ = ["MatchReviewService"]


class MatchReviewService:
    """The review decisions over one identity store."""

    def __init__(self, repository: IdentityRepository) -> None:
        self._repository = repository

    async def page(self, connection_id: str, *, limit: int, cursor: str | None) -> MatchPage:
        """A page of the connection's links and reviews (see ``match_page``)."""
        try:
            return await self._repository.match_page(connection_id, limit=limit, cursor=cursor)
        except InvalidMatchCursorError:
            raise BadRequest("the cursor is not valid", code="invalid_cursor") from None

    async def confirm(self, ref: MatchRef, *, decided_by: str) -> IdentityLink:
        """Confirm the entity's link, or the best candidate of its review entry."""
        link = await self._repository.get(ref.connection_id, ref.kind, ref.queast_id)
        if link is not None:
            confirmed = link.model_copy(
                update={"state": LinkState.CONFIRMED, "decided_by": decided_by}
            )
        else:
            entry = await self._repository.review(ref.connection_id, ref.kind, ref.queast_id)
            if entry is None or entry.best_candidate_id is None:
                raise NotFound("no link or review entry for this entity", code="match_not_found")
            confirmed = ref.link(
                entry.best_candidate_id,
                state=LinkState.CONFIRMED,
                strategy=entry.strategy or "review",
                confidence=entry.confidence,
                decided_by=decided_by,
                explanation=entry.explanation,
            )
        await self._repository.put(confirmed)
        return confirmed

    async def link(self, ref: MatchRef, partner_object_id: str, *, decided_by: str) -> IdentityLink:
        """Link (or relink) the entity to ``partner_object_id`` by hand."""
        link = ref.link(
            partner_object_id,
            state=LinkState.CONFIRMED,
            strategy="manual",
            confidence=1.0,
            decided_by=decided_by,
            explanation="linked by hand",
        )
        await self._repository.put(link)
        return link

    async def unlink(self, ref: MatchRef) -> None:
        """Remove the entity's link."""
        if not await self._repository.unlink(ref.connection_id, ref.kind, ref.queast_id):
            raise NotFound("no link for this entity", code="match_not_found")
