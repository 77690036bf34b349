"""Route classes that authorise a request before anything reads or judges its body.

FastAPI reads and parses a request's JSON body before it runs the endpoint's dependencies, so
with dependencies alone a malformed body is answered 400 before the caller is authenticated,
and an unauthenticated caller can tell endpoints apart by how they treat bodies. These route
classes (``APIRouter(route_class=...)``) run the access check first, from the request alone:

- :class:`PlatformAdminRoute`: a valid bearer token of a platform admin (401, 403);
- :class:`TenantRoute`: a valid bearer token allowed on the ``tenant_id`` path parameter (401,
  403 with one fixed body whatever the tenant). Every router of a tenant's routes is made by
  :func:`tenant_api_router`, so none is mounted without it.

Only then, for an operation that takes a body, is the body read (bounded in size and time by
:class:`processors.api.BoundedBodyMiddleware`: 413, 408) and checked: a body that is not
declared as JSON is 415 ``unsupported_media_type``; a body that is not UTF-8, not JSON, or
JSON the parser refuses (nesting too deep, an integer over Python's digit limit) is 400
``malformed_json``, one code for all of them. JSON bodies are UTF-8 (RFC 8259): a ``charset``
parameter does not change how the body is read, and UTF-16 or UTF-32 bodies, which Python's
parser would guess and accept, are refused. The framework then parses the cached body as
before, and validates it (422) once the endpoint's dependencies ran.

The endpoints keep their :func:`~processors.auth.require_tenant_access` or
:func:`~processors.auth.require_platform_admin` dependency: it documents the security scheme in
OpenAPI, hands the endpoint its principal (verified once per request, see
:func:`processors.auth.authenticate`) and keeps the endpoint safe if mounted elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from processors.auth.dependencies import authenticate, check_platform_admin, check_tenant_access
from processors.errors import BadRequest, UnsupportedMediaType, error_responses, malformed_json

__all__ = ["PlatformAdminRoute", "TenantRoute", "tenant_api_router"]

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _declares_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def _check_json_body(request: Request) -> None:
    """Read the body (the framework reuses it) and refuse one that cannot be read as JSON."""
    try:
        body = await request.body()
    except ClientDisconnect:  # nobody reads the answer; it ends the request quietly
        raise BadRequest("the client went away", code="client_disconnected") from None
    if not body:
        return  # the endpoint's validation says what is missing
    if not _declares_json(request.headers.get("content-type")):
        raise UnsupportedMediaType()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_json("request body is not valid UTF-8") from None
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        raise malformed_json() from None


class _AccessFirstRoute(APIRoute):
    """An :class:`APIRoute` whose handler runs :meth:`authorize` before the body is read."""

    async def authorize(self, request: Request) -> None:
        """Raise 401/403/503 (a :class:`~processors.errors.ServiceError`) to refuse."""
        raise NotImplementedError

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def access_first(request: Request) -> Response:
            await self.authorize(request)
            if takes_body:
                await _check_json_body(request)
            return await handler(request)

        return access_first


class PlatformAdminRoute(_AccessFirstRoute):
    """Platform admins only."""

    async def authorize(self, request: Request) -> None:
        check_platform_admin(await authenticate(request))


class TenantRoute(_AccessFirstRoute):
    """A tenant admin of the path's ``tenant_id``, or a platform admin."""

    async def authorize(self, request: Request) -> None:
        tenant_id = request.path_params.get("tenant_id")
        check_tenant_access(await authenticate(request), str(tenant_id or ""))


def tenant_api_router(
    path: str = "", *, tag: str, descriptions: Mapping[int, str] | None = None
) -> APIRouter:
    """A router for a tenant's routes under ``/v1/tenants/{tenant_id}`` + ``path``: every route
    checked by :class:`TenantRoute`, every one documenting the 401, 403, 422 and 503 it may
    answer (``descriptions`` name their codes, or add a status all the routes share)."""
    return APIRouter(
        prefix=f"/v1/tenants/{{tenant_id}}{path}",
        tags=[tag],
        responses=error_responses(401, 403, 422, 503, descriptions=descriptions),
        route_class=TenantRoute,
    )
