"""FastAPI dependencies that authenticate the caller and check what it may reach.

- :func:`current_principal`: the verified principal, or 401 with ``WWW-Authenticate: Bearer``
  (missing, malformed, expired, badly signed token, an algorithm not configured);
- :func:`require_platform_admin`: 403 unless the principal is a platform admin;
- :func:`require_tenant_access`: the ``tenant_id`` path parameter must be the tenant of a
  tenant admin's token, or the caller a platform admin; otherwise 403 with one fixed body,
  raised before the endpoint looks anything up, so the answer is the same whether or not
  that tenant (or anything under it) exists.

The verifier comes from the app (``app.state.token_verifier``, set by
:func:`processors.api.create_api`); tests may override :func:`get_token_verifier`.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from processors.auth.principal import TENANT_ID_PATTERN, Principal
from processors.auth.tokens import InvalidTokenError, SigningKeysUnavailableError, TokenVerifier
from processors.errors import Forbidden, ServiceUnavailable, Unauthorized

__all__ = [
    "bearer_scheme",
    "current_principal",
    "get_token_verifier",
    "require_platform_admin",
    "require_tenant_access",
]

_log = logging.getLogger(__name__)

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT with `sub`, `tenant_id` and `roles` (tenant_admin, platform_admin).",
)


def get_token_verifier(request: Request) -> TokenVerifier:
    """The app's verifier (raises ``RuntimeError`` if the app was built without one)."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        msg = "the app has no token verifier; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return verifier


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
) -> Principal:
    """The caller. Raises 401 (:class:`Unauthorized`) for any token that cannot be trusted,
    and 503 when the signing keys cannot be fetched."""
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
    return principal


async def require_platform_admin(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if a platform admin; else 403."""
    if not principal.is_platform_admin:
        raise Forbidden("this operation needs the platform_admin role")
    return principal


async def require_tenant_access(
    tenant_id: Annotated[str, Path(pattern=TENANT_ID_PATTERN)],
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The caller, if it may act on ``tenant_id``; else 403, revealing nothing of the tenant."""
    if not principal.can_access_tenant(tenant_id):
        raise Forbidden("not allowed for this tenant")
    return principal
