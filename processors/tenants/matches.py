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
confirmed link recorded with the caller's ``sub``. Access: a tenant admin of that tenant, or a
platform admin. Records held for review are delivered by the next export of their entity;
re-delivering the held one on a decision is not built yet.

The listing is paginated (:meth:`~processors.identity.repository.IdentityRepository.match_page`):
``limit`` is 1 to 500 (100 by default) and a page holds about that many links and reviews
together; ``next_cursor`` is null on the last page, else passed back as ``cursor``. A cursor this
API did not issue is 400 ``invalid_cursor``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from processors.appstate import api_state
from processors.auth import TENANT_ID_PATTERN, Principal, require_tenant_access
from processors.auth.routes import TenantRoute
from processors.errors import error_responses
from processors.identity.repository import IdentityLink, IdentityRepository, MatchRef, ReviewEntry
from processors.identity.review import MatchReviewService
from processors.tenants.endpoints import get_connection_service
from processors.tenants.models import Connector
from processors.tenants.service import ConnectionService

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/connections/{connector}/matches",
    tags=["identity"],
    responses=error_responses(
        401,
        403,
        422,
        503,
        descriptions={
            404: "`connection_not_found`: the tenant has no connection for this connector"
        },
    ),
    route_class=TenantRoute,
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


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partner_object_id: str = Field(min_length=1, max_length=128)


def _review_service(request: Request) -> MatchReviewService:
    """The review service over the app's Redis and settings (``app.state``)."""
    redis, settings = api_state(request)
    return MatchReviewService(IdentityRepository(redis, key_prefix=settings.redis.key_prefix))


Reviews = Annotated[MatchReviewService, Depends(_review_service)]
Connections = Annotated[ConnectionService, Depends(get_connection_service)]
TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]


async def _ref(
    connections: ConnectionService, tenant_id: str, connector: Connector, kind: str, queast_id: str
) -> MatchRef:
    connection = await connections.get_connection(tenant_id, connector)
    return MatchRef(tenant_id, connection.connection_id, kind, queast_id)


@router.get(
    "",
    summary="Links (auto-linked included) and matches waiting for review, a page at a time",
    responses=error_responses(
        descriptions={400: "`invalid_cursor`: a cursor this API did not issue"}
    ),
)
async def list_matches(
    tenant_id: TenantId,
    connector: Connector,
    _actor: Annotated[Principal, Depends(require_tenant_access)],
    connections: Connections,
    reviews: Reviews,
    *,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
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
    actor: Annotated[Principal, Depends(require_tenant_access)],
    connections: Connections,
    reviews: Reviews,
) -> IdentityLink:
    ref = await _ref(connections, tenant_id, connector, kind, queast_id)
    return await reviews.confirm(ref, decided_by=actor.sub)


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
    actor: Annotated[Principal, Depends(require_tenant_access)],
    connections: Connections,
    reviews: Reviews,
) -> IdentityLink:
    ref = await _ref(connections, tenant_id, connector, kind, queast_id)
    return await reviews.link(ref, body.partner_object_id, decided_by=actor.sub)


@router.delete(
    "/{kind}/{queast_id}", status_code=204, summary="Unlink an entity", responses=_MATCH_NOT_FOUND
)
async def unlink_match(
    tenant_id: TenantId,
    connector: Connector,
    kind: Kind,
    queast_id: QueastId,
    *,
    _actor: Annotated[Principal, Depends(require_tenant_access)],
    connections: Connections,
    reviews: Reviews,
) -> Response:
    await reviews.unlink(await _ref(connections, tenant_id, connector, kind, queast_id))
    return Response(status_code=204)
