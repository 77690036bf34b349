"""HTTP view of a tenant's delivery records (DESIGN.md "Delivery semantics", last bullet).

::

    GET /v1/tenants/{tenant_id}/deliveries
        ?status=&event_type=&event_id=&since=&until=&limit=&cursor=

Same access rule as the connections: a ``tenant_admin`` of that tenant or a ``platform_admin``
(401/403 before anything is read). Served from the Redis index
(:class:`~processors.deliveries.records.DeliveryRecordIndex`), newest first; ``since`` and
``until`` are ISO 8601 times with a timezone, bounds included; ``limit`` is 1 to 500 (50 by
default). A ``status`` that is not a delivery status is 422; a cursor this API did not issue
is 400 (``invalid_cursor``); ``since`` after ``until`` is 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import AwareDatetime

from processors.appstate import api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.deliveries.models import DeliveryStatus
from processors.deliveries.records import DeliveryRecordIndex, InvalidCursorError
from processors.deliveries.schemas import DeliveryRecordPageOut
from processors.errors import (
    INVALID_CURSOR_DESCRIPTION,
    ValidationFailed,
    invalid_cursor,
)

__all__ = ["get_delivery_record_index", "router"]

router = tenant_api_router(tag="deliveries", descriptions={400: INVALID_CURSOR_DESCRIPTION})


def get_delivery_record_index(request: Request) -> DeliveryRecordIndex:
    """The index over the app's Redis and settings (``app.state``)."""
    redis, settings = api_state(request)
    return DeliveryRecordIndex(
        redis,
        key_prefix=settings.redis.key_prefix,
        retention_seconds=settings.delivery.records_retention_seconds,
    )


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
    if since is not None and until is not None and since > until:
        raise ValidationFailed(details=[{"loc": ["query", "since"], "msg": "is after until"}])
    try:
        page = await index.query(
            tenant_id,
            status=status,
            event_type=event_type,
            event_id=event_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    except InvalidCursorError:
        raise invalid_cursor() from None
    return DeliveryRecordPageOut(items=page.items, next_cursor=page.next_cursor)
