"""HTTP view of the connection preview (:mod:`processors.operations.preview`).

::

    POST /v1/tenants/{tenant_id}/connections/{connector}/preview   {"event": {...}}
        200  what the connection would send (or why not): :class:`~.preview.Preview`

Same access rule and order as the connection endpoints (:mod:`processors.tenants.endpoints`):
a ``tenant_admin`` of that tenant or a ``platform_admin``, checked before the body is read
(401/403); the body is bounded by the API's limits (413 over
:data:`processors.api.MAX_BODY_BYTES`, 408, 415, 400 ``malformed_json``). Then:

- 422 ``validation_failed`` for a body that is not ``{"event": {...}}`` or a connector name
  that is not registered;
- 422 ``invalid_event`` for an event the router would dead-letter as invalid, with the
  router's reason and detail (``key_mismatch`` for an event of another tenant);
- 404 ``connection_not_found`` when the tenant has no connection for the connector.

Nothing is sent to the partner and nothing is written; see the service's docstring.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict

from processors.appstate import api_state
from processors.auth import TenantAccess, TenantId
from processors.auth.routes import tenant_api_router
from processors.errors import NotFound, ValidationFailed, error_responses
from processors.operations.preview import ConnectionNotFoundError, Preview, PreviewService
from processors.routing import InvalidEventError
from processors.tenants.models import Connector

__all__ = ["PreviewIn", "get_preview_service", "router"]


class PreviewIn(BaseModel):
    """The body of a preview: one domain event envelope, as published to Kafka."""

    model_config = ConfigDict(extra="forbid")

    event: dict[str, Any]


def get_preview_service(request: Request) -> PreviewService:
    """The service over the app's Redis and settings (``app.state``)."""
    redis, settings = api_state(request)
    return PreviewService(redis, settings=settings)


router = tenant_api_router(tag="operations")


@router.post(
    "/connections/{connector}/preview",
    summary="What the connection would send for one domain event (nothing is sent)",
    responses=error_responses(
        400,
        408,
        413,
        415,
        descriptions={
            404: "`connection_not_found`: the tenant has no connection for this connector",
            422: "`invalid_event`: the router would refuse the event (its reason in details);"
            " `validation_failed`: the body or path is invalid",
        },
    ),
)
async def preview_connection(
    tenant_id: TenantId,
    connector: Connector,
    body: PreviewIn,
    _actor: TenantAccess,
    service: Annotated[PreviewService, Depends(get_preview_service)],
) -> Preview:
    try:
        event = json.dumps(body.event).encode()  # ASCII: any string the parser gave survives
    except (ValueError, RecursionError):
        raise ValidationFailed(
            "the event cannot be read back as JSON",
            details=[{"loc": ["body", "event"], "msg": "not serialisable"}],
        ) from None
    try:
        return await service.preview(tenant_id, connector, event)
    except InvalidEventError as exc:
        raise ValidationFailed(
            f"the router would refuse this event: {exc.reason.value}",
            code="invalid_event",
            details=[{"loc": ["body", "event"], "msg": f"{exc.reason.value}: {exc.detail}"}],
        ) from None
    except ConnectionNotFoundError:
        raise NotFound("no connection for this connector", code="connection_not_found") from None
