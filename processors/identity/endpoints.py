"""Match review: every link of a connection (auto-linked ones included) and the ambiguous
matches waiting for a decision, and the decisions a tenant admin can make.

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
from redis.asyncio import Redis

from processors.auth import TENANT_ID_PATTERN, Principal, require_tenant_access
from processors.auth.routes import TenantRoute
from processors.errors import BadRequest, NotFound, error_responses
from processors.identity.repository import (
    IdentityLink,
    IdentityRepository,
    InvalidMatchCursorError,
    LinkState,
    ReviewEntry,
)
from processors.settings import Settings
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository

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


def _stores(request: Request) -> tuple[IdentityRepository, ConnectionRepository]:
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    prefix = settings.redis.key_prefix
    return IdentityRepository(redis, key_prefix=prefix), ConnectionRepository(
        redis, key_prefix=prefix
    )


Stores = Annotated[tuple[IdentityRepository, ConnectionRepository], Depends(_stores)]
TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]


async def _connection_id(stores: Stores, tenant_id: str, connector: Connector) -> str:
    connection = await stores[1].get(tenant_id, connector)
    if connection is None:
        raise NotFound("no connection for this connector", code="connection_not_found")
    return connection.connection_id


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
    stores: Stores,
    *,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> MatchesOut:
    connection_id = await _connection_id(stores, tenant_id, connector)
    try:
        page = await stores[0].match_page(connection_id, limit=limit, cursor=cursor)
    except InvalidMatchCursorError:
        raise BadRequest("the cursor is not valid", code="invalid_cursor") from None
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
    stores: Stores,
) -> IdentityLink:
    connection_id = await _connection_id(stores, tenant_id, connector)
    identity = stores[0]
    link = await identity.get(connection_id, kind, queast_id)
    if link is not None:
        confirmed = link.model_copy(update={"state": LinkState.CONFIRMED, "decided_by": actor.sub})
    else:
        entry = await identity.review(connection_id, kind, queast_id)
        if entry is None or entry.best_candidate_id is None:
            raise NotFound("no link or review entry for this entity", code="match_not_found")
        confirmed = IdentityLink(
            tenant_id=tenant_id,
            connection_id=connection_id,
            kind=kind,
            queast_id=queast_id,
            partner_object_id=entry.best_candidate_id,
            state=LinkState.CONFIRMED,
            strategy=entry.strategy or "review",
            confidence=entry.confidence,
            decided_by=actor.sub,
            explanation=entry.explanation,
        )
    await identity.put(confirmed)
    return confirmed


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
    stores: Stores,
) -> IdentityLink:
    connection_id = await _connection_id(stores, tenant_id, connector)
    link = IdentityLink(
        tenant_id=tenant_id,
        connection_id=connection_id,
        kind=kind,
        queast_id=queast_id,
        partner_object_id=body.partner_object_id,
        state=LinkState.CONFIRMED,
        strategy="manual",
        confidence=1.0,
        decided_by=actor.sub,
        explanation="linked by hand",
    )
    await stores[0].put(link)
    return link


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
    stores: Stores,
) -> Response:
    connection_id = await _connection_id(stores, tenant_id, connector)
    if not await stores[0].unlink(connection_id, kind, queast_id):
        raise NotFound("no link for this entity", code="match_not_found")
    return Response(status_code=204)
