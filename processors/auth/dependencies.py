"""FastAPI dependencies that authenticate the caller and check what it may reach.

- :func:`current_principal`: the verified principal, or 401 with ``WWW-Authenticate: Bearer``
  (missing, malformed, expired, badly signed token, an algorithm not configured);
- :func:`require_platform_admin`: 403 unless the principal is a platform admin;
- :func:`require_tenant_access`: the ``tenant_id`` path parameter must be the tenant of a
  tenant admin's token, or the caller a platform admin; otherwise 403 with one fixed body,
  raised before the endpoint looks anything up, so the answer is the same whether or not
  that tenant (or anything under it) exists.

The same checks, as plain calls for code that runs before FastAPI's dependencies (the routes
of :mod:`processors.auth.routes` authorise a request before they read its body):
:func:`authenticate`, :func:`check_platform_admin`, :func:`check_tenant_access`. A request's
principal is verified once and kept on its ASGI scope, so the route's check and the endpoint's
dependency share one verification.

The verifier comes from the app (``app.state.token_verifier``, set by
:func:`processors.api.create_api`); tests may override :func:`get_token_verifier` (it applies
to the dependencies, which verify when no principal is kept on the scope yet).
"""

from __future__ import annotations

import logging
from typing import Annotated, Final, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from processors.auth.principal import TENANT_ID_PATTERN, Principal
from processors.auth.tokens import InvalidTokenError, SigningKeysUnavailableError, TokenVerifier
from processors.errors import Forbidden, ServiceUnavailable, Unauthorized

__all__ = [
    "TenantAccess",
    "TenantId",
    "app_state_item",
    "authenticate",
    "bearer_scheme",
    "check_platform_admin",
    "check_tenant_access",
    "current_principal",
    "get_token_verifier",
    "require_platform_admin",
    "require_tenant_access",
]

_log = logging.getLogger(__name__)

_PRINCIPAL_SCOPE_KEY: Final = "qi.principal"

_T = TypeVar("_T")

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT with `sub`, `tenant_id` and `roles` (tenant_admin, platform_admin).",
)


def app_state_item(request: Request, name: str, kind: type[_T], *, what: str) -> _T:
    """``app.state.<name>`` of the request's app, which must be a ``kind``; otherwise raises
    ``RuntimeError`` naming ``what`` (the app was not built by
    :func:`processors.api.create_api`). Any router may use it for what the app keeps."""
    item = getattr(request.app.state, name, None)
    if not isinstance(item, kind):
        msg = f"the app has no {what}; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return item


def get_token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier (raises ``RuntimeError`` if the app was built without one)."""
    return app_state_item(request, "token_verifier", TokenVerifier, what="token verifier")


async def _verify(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    verifier: TokenVerifier,
) -> Principal:
    cached = request.scope.get(_PRINCIPAL_SCOPE_KEY)
    if isinstance(cached, Principal):
        return cached
    if credentials is None:
        raise Unauthorized("a bearer token is required", code="missing_token")
    try:
        principal = await verifier.verify(credentials.credentials)
    except InvalidTokenError as exc:
        _log.info(
            "auth.token.rejected",
            extra={"reason": exc.reason, "path": request.url.path, "method": request.method},
        )
        raise Unauthorized(
            "the bearer token is invalid or expired",
            code="invalid_token",
            www_authenticate='Bearer error="invalid_token"',
        ) from None
    except SigningKeysUnavailableError:
        _log.warning("auth.jwks.unavailable")
        raise ServiceUnavailable("cannot verify tokens right now") from None
    request.scope[_PRINCIPAL_SCOPE_KEY] = principal
    return principal


async def authenticate(request: Request) -> Principal:
    """The caller of ``request``, verified with the app's verifier; the same errors as
    :func:`current_principal`. Verified once per request (kept on the ASGI scope)."""
    return await _verify(request, await bearer_scheme(request), get_token_verifier(request))


def check_platform_admin(principal: Principal) -> None:
    """403 unless ``principal`` is a platform admin."""
    if not principal.is_platform_admin:
        raise Forbidden("this operation needs the platform_admin role")


def check_tenant_access(principal: Principal, tenant_id: str) -> None:
    """403 unless ``principal`` may act on ``tenant_id``; one fixed body, whatever the tenant."""
    if not principal.can_access_tenant(tenant_id):
        raise Forbidden("not allowed for this tenant")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
) -> Principal:
    """The caller. Raises 401 (:class:`Unauthorized`) for any token that cannot be trusted,
    and 503 when the signing keys cannot be fetched."""
    return await _verify(request, credentials, verifier)


async def require_platform_admin(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if a platform admin; else 403."""
    check_platform_admin(principal)
    return principal


async def require_tenant_access(
    tenant_id: Annotated[str, Path(pattern=TENANT_ID_PATTERN)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if it may act on ``tenant_id``; else 403, revealing nothing of the tenant."""
    check_tenant_access(principal, tenant_id)
    return principal


TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN, examples=["t_42"])]
"""The ``{tenant_id}`` path parameter of a tenant's routes."""

TenantAccess = Annotated[Principal, Depends(require_tenant_access)]
"""The caller of a tenant's route: a tenant admin of that tenant or a platform admin (else 403)."""
