"""HTTP view of a tenant's delivery records (DESIGN.md "Delivery semantics", last bullet).

::

    GET /v1/tenants/{tenant_id}/deliveries
        ?status=&event_type=&event_id=&since=&until=&limit=&cursor=

Same access rule as the connections: a ``tenant_admin`` of that tenant or a ``platform_admin``
(401/403 before anything is read). Served from the Redis index
(:class:`~processors.deliveries.records.DeliveryRecordIndex`), newest first; ``since`` and
``until`` are ISO 8601 times with a timezone, bounds included; ``limit`` is 1 to 500 (50 by
default). A ``status`` that is not a delivery status is 422; a cursor this API did not issue
is 400 (``invalid_cursor``); ``since`` after ``until`` is 422. The console's deliveries page
reads its pages through the same :func:`delivery_page`, with the same answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypedDict, Unpack

from fastapi import Depends, Query, Request
from pydantic import AwareDatetime

from processors.appstate import api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.deliveries.models import DeliveryStatus
from processors.deliveries.records import (
    DeliveryRecordIndex,
    DeliveryRecordPage,
    InvalidCursorError,
)
from processors.deliveries.schemas import DeliveryRecordPageOut
from processors.errors import (
    INVALID_CURSOR_DESCRIPTION,
    ValidationFailed,
    invalid_cursor,
)

__all__ = ["DeliveryFilters", "delivery_page", "get_delivery_record_index", "router"]

router = tenant_api_router(tag="deliveries", descriptions={400: INVALID_CURSOR_DESCRIPTION})


def get_delivery_record_index(request: Request) -> DeliveryRecordIndex:
    """The index over the app's Redis and settings (``app.state``)."""
    redis, settings = api_state(request)
    return DeliveryRecordIndex(
        redis,
        key_prefix=settings.redis.key_prefix,
        retention_seconds=settings.delivery.records_retention_seconds,
    )


class DeliveryFilters(TypedDict, total=False):
    """What a page of delivery records is filtered on (a filter left out or ``None``: none)."""

    status: DeliveryStatus | None
    event_type: str | None
    event_id: str | None
    since: datetime | None
    until: datetime | None


async def delivery_page(
    index: DeliveryRecordIndex,
    tenant_id: str,
    *,
    limit: int,
    cursor: str | None,
    **filters: Unpack[DeliveryFilters],
) -> DeliveryRecordPage:
    """A page of the tenant's delivery records, newest first: 422 naming ``since`` when it is
    after ``until``, 400 ``invalid_cursor`` for a cursor the index did not issue."""
    since, until = filters.get("since"), filters.get("until")
    if since is not None and until is not None and since > until:
        raise ValidationFailed(details=[{"loc": ["query", "since"], "msg": "is after until"}])
    try:
        return await index.query(tenant_id, limit=limit, cursor=cursor, **filters)
    except InvalidCursorError:
        raise invalid_cursor() from None


@router.get("/deliveries", summary="The tenant's delivery records, newest first")
async def list_deliveries(
    tenant_id: TenantId,
    _actor: TenantAccess,
    index: Annotated[DeliveryRecordIndex, Depends(get_delivery_record_index)],
    *,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    event_type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    event_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
) -> DeliveryRecordPageOut:
    page = await delivery_page(
        index,
        tenant_id,
        status=status,
        event_type=event_type,
        event_id=event_id,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return DeliveryRecordPageOut(items=page.items, next_cursor=page.next_cursor)
