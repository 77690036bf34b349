"""HTTP endpoints of the allowlist and of tenants' connections.

Admin (``platform_admin`` only)::

    PUT    /admin/v1/allowlist/{tenant_id}     204  put the tenant on the allowlist
    DELETE /admin/v1/allowlist/{tenant_id}     204  take it off
    GET    /admin/v1/allowlist/{tenant_id}     200  {"tenant_id", "allowlisted"}

Tenant (a ``tenant_admin`` of that tenant, or a ``platform_admin``)::

    GET    /v1/tenants/{tenant_id}/connections                200  {"items": [...]}
    PUT    /v1/tenants/{tenant_id}/connections/{connector}    201 created, 200 replaced
    GET    /v1/tenants/{tenant_id}/connections/{connector}    200, 404 if none
    DELETE /v1/tenants/{tenant_id}/connections/{connector}    204, 404 if none

Authentication and tenant scoping run before anything is read, the request body included
(the routers' route classes, :mod:`processors.auth.routes`), so a caller without access gets
401/403 whatever the path names and whatever the body holds. Every operation declares in
OpenAPI each status it answers, with the error body's schema
(:func:`processors.errors.error_responses`). The endpoints only translate HTTP to
:class:`~processors.tenants.service.ConnectionService` calls; errors are rendered by
:mod:`processors.errors`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request, Response, status
from redis.asyncio import Redis

from processors.auth import (
    TENANT_ID_PATTERN,
    Principal,
    require_platform_admin,
    require_tenant_access,
)
from processors.auth.routes import PlatformAdminRoute, TenantRoute
from processors.errors import NotFound, error_responses
from processors.settings import Settings
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import (
    AllowlistStatus,
    ConnectionIn,
    ConnectionList,
    ConnectionOut,
    HubSpotConnectionIn,
    PipedriveConnectionIn,
    WebhookConnectionIn,
)
from processors.tenants.service import ConnectionService

__all__ = ["admin_router", "get_connection_service", "tenant_router"]

TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN, examples=["t_42"])]
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]
TenantAccess = Annotated[Principal, Depends(require_tenant_access)]

_BODY_ERRORS: Final = error_responses(
    400,
    408,
    413,
    415,
    descriptions={
        403: (
            "`forbidden`: the caller's role or tenant does not allow this; "
            "`tenant_not_allowlisted`: a tenant admin's tenant is not on the allowlist"
        ),
        409: "`stored_secret_unreadable`: a kept webhook secret cannot be opened; send it again",
    },
)
_NOT_FOUND: Final = error_responses(
    descriptions={404: "`connection_not_found`: the tenant has no connection for this connector"}
)
_SAVED: Final[dict[int | str, dict[str, Any]]] = {
    201: {"description": "Created", "model": ConnectionOut},
    200: {"description": "Replaced", "model": ConnectionOut},
    **_BODY_ERRORS,
}


def get_connection_service(request: Request) -> ConnectionService:
    """The service over the app's Redis and settings (``app.state``)."""
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return ConnectionService(
        ConnectionRepository(redis, key_prefix=settings.redis.key_prefix),
        box=settings.secrets.secret_box(),
        allow_private_networks=settings.webhook.allow_private_networks,
    )


Service = Annotated[ConnectionService, Depends(get_connection_service)]

admin_router = APIRouter(
    prefix="/admin/v1",
    tags=["admin"],
    responses=error_responses(401, 403, 422, 503),
    route_class=PlatformAdminRoute,
)
tenant_router = APIRouter(
    prefix="/v1/tenants/{tenant_id}",
    tags=["connections"],
    responses=error_responses(401, 403, 422, 503),
    route_class=TenantRoute,
)


@admin_router.put(
    "/allowlist/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Allow a tenant to use integrations",
)
async def allow_tenant(tenant_id: TenantId, actor: PlatformAdmin, service: Service) -> Response:
    await service.set_allowlisted(tenant_id, True, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.delete(
    "/allowlist/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take a tenant off the integrations allowlist",
)
async def disallow_tenant(tenant_id: TenantId, actor: PlatformAdmin, service: Service) -> Response:
    await service.set_allowlisted(tenant_id, False, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.get("/allowlist/{tenant_id}", summary="Whether a tenant is on the allowlist")
async def allowlist_status(
    tenant_id: TenantId, _actor: PlatformAdmin, service: Service
) -> AllowlistStatus:
    return AllowlistStatus(tenant_id=tenant_id, allowlisted=await service.is_allowlisted(tenant_id))


@tenant_router.get("/connections", summary="List the tenant's connections")
async def list_connections(
    tenant_id: TenantId, _actor: TenantAccess, service: Service
) -> ConnectionList:
    connections = await service.list_connections(tenant_id)
    return ConnectionList(items=[ConnectionOut.from_record(c) for c in connections])


async def _save(
    tenant_id: str,
    connector: Connector,
    body: ConnectionIn,
    *,
    actor: Principal,
    service: ConnectionService,
    response: Response,
) -> ConnectionOut:
    record, created = await service.save_connection(tenant_id, connector, body, actor=actor)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ConnectionOut.from_record(record)


@tenant_router.put(
    "/connections/webhook",
    summary="Create or replace the tenant's signed-webhook connection",
    responses=_SAVED,
)
async def put_webhook_connection(
    tenant_id: TenantId,
    body: WebhookConnectionIn,
    actor: TenantAccess,
    service: Service,
    response: Response,
) -> ConnectionOut:
    return await _save(
        tenant_id, Connector.WEBHOOK, body, actor=actor, service=service, response=response
    )


@tenant_router.put(
    "/connections/hubspot",
    summary="Create or replace the tenant's HubSpot connection",
    responses=_SAVED,
)
async def put_hubspot_connection(
    tenant_id: TenantId,
    body: HubSpotConnectionIn,
    actor: TenantAccess,
    service: Service,
    response: Response,
) -> ConnectionOut:
    return await _save(
        tenant_id, Connector.HUBSPOT, body, actor=actor, service=service, response=response
    )


@tenant_router.put(
    "/connections/pipedrive",
    summary="Create or replace the tenant's Pipedrive connection",
    responses=_SAVED,
)
async def put_pipedrive_connection(
    tenant_id: TenantId,
    body: PipedriveConnectionIn,
    actor: TenantAccess,
    service: Service,
    response: Response,
) -> ConnectionOut:
    return await _save(
        tenant_id, Connector.PIPEDRIVE, body, actor=actor, service=service, response=response
    )


@tenant_router.put("/connections/{connector}", include_in_schema=False)
async def put_unknown_connection(
    tenant_id: TenantId, connector: Connector, _actor: TenantAccess
) -> None:
    """Reached only by names that are not connectors: 422 from the path check, after the
    access check (a 405 would be wrong, the resource exists for GET)."""
    raise NotFound("unknown connector", code="unknown_connector")


@tenant_router.get(
    "/connections/{connector}",
    summary="The tenant's connection to a connector",
    responses=_NOT_FOUND,
)
async def get_connection(
    tenant_id: TenantId, connector: Connector, _actor: TenantAccess, service: Service
) -> ConnectionOut:
    return ConnectionOut.from_record(await service.get_connection(tenant_id, connector))


@tenant_router.delete(
    "/connections/{connector}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove the tenant's connection to a connector",
    responses=_NOT_FOUND,
)
async def delete_connection(
    tenant_id: TenantId, connector: Connector, actor: TenantAccess, service: Service
) -> Response:
    await service.delete_connection(tenant_id, connector, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
