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
- :meth:`~MatchReviewService.unlink` removes a link, or rejects a review entry (none of its
  candidates is this entity: the entity is created anew in the partner).

Every decision then releases the records held for the entity (:mod:`processors.identity.held`,
sent again by :mod:`processors.operations.release`), once: a confirmed or hand-made link is
what the released records update; after a reject they create a new partner object; after an
unlink the entity is looked up again. The service stores the decision first and releases
second, so a released record always finds the decision. A decision on an entity with nothing
held releases nothing (``released: 0``); so does the same decision made again. Without a
releaser (a service built for listing only) nothing is released.

A missing link or review entry is :class:`~processors.errors.NotFound` ``match_not_found``; a
cursor the listing did not issue is :class:`~processors.errors.BadRequest` ``invalid_cursor``.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.errors import NotFound, invalid_cursor
from processors.identity.held import HeldSubject, Released, Releaser
from processors.identity.repository import (
    IdentityLink,
    IdentityRepository,
    InvalidMatchCursorError,
    LinkState,
    MatchPage,
    MatchRef,
)

__all__ = ["Decision", "MatchReviewService"]

_NOTHING = Released(0, None)


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision's outcome: the entity's link (``None`` after an unlink or a reject) and
    what was released."""

    link: IdentityLink | None
    released: Released


class MatchReviewService:
    """The review decisions over one identity store."""

    def __init__(self, repository: IdentityRepository, *, releaser: Releaser | None = None) -> None:
        self._repository = repository
        self._releaser = releaser

    async def _release(self, ref: MatchRef, *, connector: str, decision: str) -> Released:
        if self._releaser is None:
            return _NOTHING
        subject = HeldSubject(ref.connection_id, ref.kind, ref.queast_id)
        return await self._releaser.release(
            subject, connector=connector, tenant_id=ref.tenant_id, decision=decision
        )

    async def page(self, connection_id: str, *, limit: int, cursor: str | None) -> MatchPage:
        """A page of the connection's links and reviews (see ``match_page``)."""
        try:
            return await self._repository.match_page(connection_id, limit=limit, cursor=cursor)
        except InvalidMatchCursorError:
            raise invalid_cursor() from None

    async def confirm(self, ref: MatchRef, *, decided_by: str, connector: str) -> Decision:
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
        released = await self._release(ref, connector=connector, decision="confirm")
        return Decision(confirmed, released)

    async def link(
        self, ref: MatchRef, partner_object_id: str, *, decided_by: str, connector: str
    ) -> Decision:
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
        released = await self._release(ref, connector=connector, decision="link")
        return Decision(link, released)

    async def unlink(self, ref: MatchRef, *, connector: str) -> Decision:
        """Remove the entity's link, or reject its review entry; release what is held.

        With neither, only what a release left unfinished is sent; ``match_not_found`` when
        there is nothing at all.
        """
        if await self._repository.unlink(ref.connection_id, ref.kind, ref.queast_id):
            decision = "unlink"
        elif await self._repository.reject(ref.connection_id, ref.kind, ref.queast_id):
            decision = "reject"
        else:
            released = await self._release(ref, connector=connector, decision="resume")
            if released.released == 0:
                raise NotFound("no link or review entry for this entity", code="match_not_found")
            return Decision(None, released)
        return Decision(None, await self._release(ref, connector=connector, decision=decision))
