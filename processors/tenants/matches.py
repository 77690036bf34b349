"""Match review API: every link of a connection (auto-linked ones included) and the ambiguous
matches waiting for a decision, and the decisions a tenant admin can make.

A sub-resource of a tenant's connection, so it lives with the connection API: the router finds
the connection through :class:`~processors.tenants.service.ConnectionService` and hands the
decision to :class:`~processors.identity.review.MatchReviewService`. Routers call services,
services call repositories; the identity package never imports this one.

::

    GET    /v1/tenants/{tenant_id}/connections/{connector}/matches?limit=&cursor=
    POST   /v1/tenants/{tenant_id}/connections/{connector}/matches/{kind}/{queast_id}/confirm
    PUT    /v1/tenants/{tenant_id}/connections/{connector}/matches/{kind}/{queast_id}
           {"partner_object_id": "..."}            link (or relink) by hand
    DELETE /v1/tenants/{tenant_id}/connections/{connector}/matches/{kind}/{queast_id}

``confirm`` turns an auto-linked match, or the best candidate of a review entry, into a
confirmed link recorded with the caller's ``sub``. ``DELETE`` removes a link, or, for an entity
with a review entry and no link, rejects the review: none of its candidates is the entity, which
is then created anew in the partner. Access: a tenant admin of that tenant, or a platform admin.

Every decision releases the records held for the entity, once
(:mod:`processors.operations.release`): ``confirm`` and ``PUT`` answer the link with
``released`` (how many records were sent again) and ``release_id`` (the ``replay_id`` their
delivery records carry; null when nothing was released); ``DELETE`` answers 204 with the same
two in the ``Qi-Released`` and ``Qi-Release-Id`` headers. A repeated decision releases nothing
more. If the broker refuses the records, the decision is kept and the answer is 503
``release_failed``: repeating the decision sends them, with the same release id.

The listing is paginated (:meth:`~processors.identity.repository.IdentityRepository.match_page`):
``limit`` is 1 to 500 (100 by default) and a page holds about that many links and reviews
together; ``next_cursor`` is null on the last page, else passed back as ``cursor``. A cursor this
API did not issue is 400 ``invalid_cursor``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Final, Literal

from fastapi import Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from processors.appstate import api_releaser, api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.errors import ServiceUnavailable, error_responses
from processors.identity.held import ReleaseError
from processors.identity.repository import IdentityLink, IdentityRepository, MatchRef, ReviewEntry
from processors.identity.review import Decision, MatchReviewService
from processors.paging import PageLimit, ScanCursor, paged_responses
from processors.tenants.endpoints import get_connection_service
from processors.tenants.models import Connector
from processors.tenants.service import ConnectionService

__all__ = ["router"]

router = tenant_api_router(
    "/connections/{connector}/matches",
    tag="identity",
    descriptions={404: "`connection_not_found`: the tenant has no connection for this connector"},
)
_MATCH_NOT_FOUND: Final = error_responses(
    descriptions={
        404: (
            "`connection_not_found`: the tenant has no connection for this connector; "
            "`match_not_found`: no link (or review entry) for this entity"
        )
    }
)

Kind = Literal["company", "person"]
QueastId = Annotated[str, Path(min_length=1, max_length=128)]


class MatchesOut(BaseModel):
    links: list[IdentityLink]
    reviews: list[ReviewEntry]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class DecisionOut(IdentityLink):
    """The entity's link after the decision, and what the decision released."""

    released: int = Field(
        description="Records held for this entity that the decision sent again (0: none)."
    )
    release_id: str | None = Field(
        default=None, description="The `replay_id` of the released records' delivery records."
    )


def _answer(decision: Decision) -> DecisionOut:
    if decision.link is None:  # confirm and link always store one
        msg = "a confirm or link decision without a link"
        raise RuntimeError(msg)
    return DecisionOut(
        **decision.link.model_dump(),
        released=decision.released.released,
        release_id=decision.released.release_id,
    )


async def _decide(action: Awaitable[Decision]) -> Decision:
    try:
        return await action
    except ReleaseError:
        raise ServiceUnavailable(
            "the decision is recorded but its held records could not be sent yet; "
            "repeat the decision",
            code="release_failed",
        ) from None


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partner_object_id: str = Field(min_length=1, max_length=128)


def _review_service(request: Request) -> MatchReviewService:
    """The review service over the app's Redis and settings (``app.state``)."""
    redis, settings = api_state(request)
    return MatchReviewService(
        IdentityRepository(redis, key_prefix=settings.redis.key_prefix),
        releaser=api_releaser(request),
    )


Reviews = Annotated[MatchReviewService, Depends(_review_service)]
Connections = Annotated[ConnectionService, Depends(get_connection_service)]


async def _ref(
    connections: ConnectionService, tenant_id: str, connector: Connector, kind: str, queast_id: str
) -> MatchRef:
    connection = await connections.get_connection(tenant_id, connector)
    return MatchRef(tenant_id, connection.connection_id, kind, queast_id)


@router.get(
    "",
    summary="Links (auto-linked included) and matches waiting for review, a page at a time",
    responses=paged_responses(),
)
async def list_matches(
    tenant_id: TenantId,
    connector: Connector,
    _actor: TenantAccess,
    connections: Connections,
    reviews: Reviews,
    *,
    limit: PageLimit = 100,
    cursor: ScanCursor = None,
) -> MatchesOut:
    connection = await connections.get_connection(tenant_id, connector)
    page = await reviews.page(connection.connection_id, limit=limit, cursor=cursor)
    return MatchesOut(links=page.links, reviews=page.reviews, next_cursor=page.next_cursor)


@router.post(
    "/{kind}/{queast_id}/confirm",
    summary="Confirm a link or a review's best match",
    responses=_MATCH_NOT_FOUND,
)
async def confirm_match(
    tenant_id: TenantId,
    connector: Connector,
    kind: Kind,
    queast_id: QueastId,
    *,
    actor: TenantAccess,
    connections: Connections,
    reviews: Reviews,
) -> DecisionOut:
    ref = await _ref(connections, tenant_id, connector, kind, queast_id)
    return _answer(
        await _decide(reviews.confirm(ref, decided_by=actor.sub, connector=connector.value))
    )


@router.put(
    "/{kind}/{queast_id}",
    summary="Link (or relink) an entity to a partner object",
    responses=error_responses(400, 408, 413, 415),
)
async def link_match(
    tenant_id: TenantId,
    connector: Connector,
    kind: Kind,
    queast_id: QueastId,
    *,
    body: LinkIn,
    actor: TenantAccess,
    connections: Connections,
    reviews: Reviews,
) -> DecisionOut:
    ref = await _ref(connections, tenant_id, connector, kind, queast_id)
    decision = reviews.link(
        ref, body.partner_object_id, decided_by=actor.sub, connector=connector.value
    )
    return _answer(await _decide(decision))


@router.delete(
    "/{kind}/{queast_id}",
    status_code=204,
    summary="Unlink an entity, or reject its review (it is created anew)",
    responses={
        **_MATCH_NOT_FOUND,
        204: {
            "description": "Unlinked or rejected; the records held for the entity were released",
            "headers": {
                "Qi-Released": {
                    "description": "How many held records the decision sent again",
                    "schema": {"type": "integer"},
                },
                "Qi-Release-Id": {
                    "description": "The `replay_id` of their delivery records (if any)",
                    "schema": {"type": "string"},
                },
            },
        },
    },
)
async def unlink_match(
    tenant_id: TenantId,
    connector: Connector,
    kind: Kind,
    queast_id: QueastId,
    *,
    _actor: TenantAccess,
    connections: Connections,
    reviews: Reviews,
) -> Response:
    ref = await _ref(connections, tenant_id, connector, kind, queast_id)
    decision = await _decide(reviews.unlink(ref, connector=connector.value))
    headers = {"Qi-Released": str(decision.released.released)}
    if decision.released.release_id is not None:
        headers["Qi-Release-Id"] = decision.released.release_id
    return Response(status_code=204, headers=headers)
