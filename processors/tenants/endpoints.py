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

The PUT is one implementation (:func:`_put_connection`) mounted once per registered connector
(``/connections/<name>``, operation ``put_<name>_connection``), because each connector has its
own body model (:func:`~processors.tenants.schemas.connection_body`) and so its own OpenAPI
request schema. :func:`tenant_router` builds the router from the registry each time it is
called, so an app serves the connectors registered when it is created.

Authentication and tenant scoping run before anything is read, the request body included
(the routers' route classes, :mod:`processors.auth.routes`), so a caller without access gets
401/403 whatever the path names and whatever the body holds. Every operation declares in
OpenAPI each status it answers, with the error body's schema
(:func:`processors.errors.error_responses`). The endpoints only translate HTTP to
:class:`~processors.tenants.service.ConnectionService` calls; errors are rendered by
:mod:`processors.errors`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response, status

from connectors.registry import get_connector
from processors.appstate import api_state
from processors.auth import (
    Principal,
    TenantAccess,
    TenantId,
    require_platform_admin,
)
from processors.auth.routes import PlatformAdminRoute, tenant_api_router
from processors.connection_health import HealthStore
from processors.errors import NotFound, error_responses
from processors.tenants.health import ConnectionHealthView
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import (
    AllowlistStatus,
    ConnectionBody,
    ConnectionList,
    ConnectionOut,
    connection_body,
)
from processors.tenants.service import ConnectionService

__all__ = ["admin_router", "get_connection_service", "tenant_router"]

PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]

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
    redis, settings = api_state(request)
    return ConnectionService(
        ConnectionRepository(redis, key_prefix=settings.redis.key_prefix),
        box=settings.secrets.secret_box(),
        allow_private_networks=settings.webhook.allow_private_networks,
        health=ConnectionHealthView(HealthStore(redis, key_prefix=settings.redis.key_prefix)),
    )


Service = Annotated[ConnectionService, Depends(get_connection_service)]

admin_router = APIRouter(
    prefix="/admin/v1",
    tags=["admin"],
    responses=error_responses(401, 403, 422, 503),
    route_class=PlatformAdminRoute,
)


def _allowlist_setter(allowlisted: bool) -> Callable[..., Awaitable[Response]]:
    """The endpoint that puts a tenant on the allowlist (``True``) or takes it off."""

    async def set_allowlisted(
        tenant_id: TenantId, actor: PlatformAdmin, service: Service
    ) -> Response:
        await service.set_allowlisted(tenant_id, allowlisted, actor=actor)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return set_allowlisted


for _method, _allowlisted, _name, _summary in (
    ("PUT", True, "allow_tenant", "Allow a tenant to use integrations"),
    ("DELETE", False, "disallow_tenant", "Take a tenant off the integrations allowlist"),
):
    admin_router.add_api_route(
        "/allowlist/{tenant_id}",
        _allowlist_setter(_allowlisted),
        methods=[_method],
        name=_name,
        status_code=status.HTTP_204_NO_CONTENT,
        summary=_summary,
    )


@admin_router.get("/allowlist/{tenant_id}", summary="Whether a tenant is on the allowlist")
async def allowlist_status(
    tenant_id: TenantId, _actor: PlatformAdmin, service: Service
) -> AllowlistStatus:
    return AllowlistStatus(tenant_id=tenant_id, allowlisted=await service.is_allowlisted(tenant_id))


async def list_connections(
    tenant_id: TenantId, _actor: TenantAccess, service: Service
) -> ConnectionList:
    connections = await service.list_connections(tenant_id)
    return ConnectionList(
        items=[ConnectionOut.from_record(c, await service.status(c)) for c in connections]
    )


PutConnection = Callable[..., Awaitable[ConnectionOut]]


def _put_connection(connector: Connector) -> PutConnection:
    """The PUT of one connector: the same steps for every one, with its own body model."""
    body_model = connection_body(connector)

    async def put_connection(
        tenant_id: TenantId,
        body: ConnectionBody,
        actor: TenantAccess,
        service: Service,
        response: Response,
    ) -> ConnectionOut:
        record, created = await service.save_connection(tenant_id, connector, body, actor=actor)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return ConnectionOut.from_record(record, await service.status(record))

    # FastAPI reads the body model from the signature (``inspect.signature`` honours a
    # function's ``__signature__``): this connector's model instead of the base class.
    signature = inspect.signature(put_connection)
    body = signature.parameters["body"].replace(annotation=body_model)
    parameters = [body if p.name == "body" else p for p in signature.parameters.values()]
    put_connection.__dict__["__signature__"] = signature.replace(parameters=parameters)
    return put_connection


async def put_unknown_connection(
    tenant_id: TenantId, connector: Connector, _actor: TenantAccess
) -> None:
    """Reached only by names that are not connectors: 422 from the path check, after the
    access check (a 405 would be wrong, the resource exists for GET)."""
    raise NotFound("unknown connector", code="unknown_connector")


async def get_connection(
    tenant_id: TenantId, connector: Connector, _actor: TenantAccess, service: Service
) -> ConnectionOut:
    connection = await service.get_connection(tenant_id, connector)
    return ConnectionOut.from_record(connection, await service.status(connection))


async def delete_connection(
    tenant_id: TenantId, connector: Connector, actor: TenantAccess, service: Service
) -> Response:
    await service.delete_connection(tenant_id, connector, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def tenant_router() -> APIRouter:
    """The tenant's connection endpoints, one PUT per connector registered now."""
    router = tenant_api_router(tag="connections")
    router.add_api_route("/connections", list_connections, summary="List the tenant's connections")
    for connector in Connector:
        spec = get_connector(connector)
        router.add_api_route(
            f"/connections/{connector}",
            _put_connection(connector),
            methods=["PUT"],
            name=f"put_{connector}_connection",
            summary=f"Create or replace the tenant's {spec.display_name} connection",
            responses=_SAVED,
        )
    router.add_api_route(
        "/connections/{connector}",
        put_unknown_connection,
        methods=["PUT"],
        include_in_schema=False,
    )
    router.add_api_route(
        "/connections/{connector}",
        get_connection,
        methods=["GET"],
        summary="The tenant's connection to a connector",
        responses=_NOT_FOUND,
    )
    router.add_api_route(
        "/connections/{connector}",
        delete_connection,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Remove the tenant's connection to a connector",
        responses=_NOT_FOUND,
    )
    return router
