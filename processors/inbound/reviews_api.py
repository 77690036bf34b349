"""The inbound review API: highlights waiting for a human, and their decisions.

::

    GET  /v1/tenants/{tenant_id}/inbound/reviews?limit=&cursor=
         200 {"items", "next_cursor"}
    POST /v1/tenants/{tenant_id}/inbound/reviews/{review_id}/resolve
         200 the decided review
         {"company_id": "..."}   one of the tenant's companies: creates the bookmark, once
         {"reject": true}        no bookmark

Access: a tenant admin of that tenant, or a platform admin (the same dependency and route
class as :mod:`processors.tenants.endpoints`: checked before the body is read). A review id of
another tenant is 404 ``review_not_found``, as is an unknown one.

Listing: pending reviews first (oldest first), then decided ones (newest first); ``limit`` 1 to
500 (100 by default); ``next_cursor`` is null on the last page, else passed back as ``cursor``;
a cursor this API did not issue is 400 ``invalid_cursor``. Each review carries its candidates
(company id, score, strategy), the reason, the event, and once decided the bookmark.

Resolving twice with the same company answers the same bookmark and produces nothing; another
company, or resolving a rejected review, is 409 ``review_already_decided`` (see
:mod:`processors.inbound.review_service`). When Kafka does not acknowledge the bookmark, 503
``kafka_unavailable``: nothing is decided and the call may be repeated.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from processors.appstate import api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.errors import ServiceUnavailable, error_responses, invalid_cursor
from processors.inbound.bookmark_producer import ProduceError, bookmark_producer
from processors.inbound.directory import CompanyDirectory
from processors.inbound.models import Bookmark, InboundReview
from processors.inbound.review_service import InboundReviewService
from processors.inbound.reviews import BookmarkMarks, InvalidReviewCursorError, ReviewStore
from processors.paging import PageLimit, ScanCursor, paged_responses
from processors.topics import TopicMap

__all__ = ["router"]

router = tenant_api_router("/inbound/reviews", tag="inbound")

ReviewId = Annotated[str, Path(pattern=r"^rv_[0-9a-f]{32}$")]
_DECISION_ERRORS: Final = error_responses(
    400,
    408,
    413,
    415,
    descriptions={
        404: "`review_not_found`: no such review for this tenant",
        409: (
            "`review_already_decided`: resolved to another company, or rejected; "
            "`review_in_progress`: another decision is being made"
        ),
    },
)


class ReviewsOut(BaseModel):
    items: list[InboundReview]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class DecisionIn(BaseModel):
    """Either ``company_id`` (resolve to that company) or ``reject: true``."""

    model_config = ConfigDict(extra="forbid")

    company_id: str | None = Field(default=None, min_length=1, max_length=128)
    reject: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_decision(self) -> DecisionIn:
        if (self.company_id is None) == (self.reject is None):
            msg = "give exactly one of company_id and reject"
            raise ValueError(msg)
        return self


def _service(request: Request) -> InboundReviewService:
    redis, settings = api_state(request)
    prefix = settings.redis.key_prefix
    topics = TopicMap(settings.topics.prefix)

    async def produce(bookmark: Bookmark) -> None:
        try:
            await bookmark_producer(request).produce(
                topics.bookmarks,
                bookmark.tenant_id.encode(),
                bookmark.model_dump_json().encode(),
            )
        except ProduceError as exc:
            raise ServiceUnavailable(
                "the event broker did not take the bookmark, try again shortly",
                code="kafka_unavailable",
            ) from exc

    return InboundReviewService(
        store=ReviewStore(redis, key_prefix=prefix),
        directory=CompanyDirectory(redis, key_prefix=prefix),
        marks=BookmarkMarks(redis, key_prefix=prefix),
        produce=produce,
    )


Service = Annotated[InboundReviewService, Depends(_service)]


@router.get(
    "",
    summary="Inbound highlights waiting for review (pending first), a page at a time",
    responses=paged_responses(),
)
async def list_reviews(
    tenant_id: TenantId,
    _actor: TenantAccess,
    service: Service,
    *,
    limit: PageLimit = 100,
    cursor: ScanCursor = None,
) -> ReviewsOut:
    try:
        page = await service.page(tenant_id, limit=limit, cursor=cursor)
    except InvalidReviewCursorError:
        raise invalid_cursor() from None
    return ReviewsOut(items=page.reviews, next_cursor=page.next_cursor)


@router.post(
    "/{review_id}/resolve",
    summary="Resolve a review to one of the tenant's companies (one bookmark), or reject it",
    responses=_DECISION_ERRORS,
)
async def resolve_review(
    tenant_id: TenantId,
    review_id: ReviewId,
    body: DecisionIn,
    actor: TenantAccess,
    service: Service,
) -> InboundReview:
    if body.company_id is not None:
        return await service.resolve(tenant_id, review_id, body.company_id, decided_by=actor.sub)
    return await service.reject(tenant_id, review_id, decided_by=actor.sub)
