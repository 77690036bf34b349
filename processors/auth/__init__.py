"""Authentication and authorisation of the HTTP API: bearer JWTs, roles, tenant scoping.

Public API (pinned in ``__all__``):

* :class:`Principal`, :class:`Role` - who calls, with which roles, for which tenant;
* :class:`TokenVerifier` - HS256 (shared secret) or RS256 (JWKS) verification;
* :class:`InvalidTokenError`, :class:`SigningKeysUnavailableError` - why a token is refused;
* the FastAPI dependencies :func:`current_principal`, :func:`require_platform_admin`,
  :func:`require_tenant_access` and the OpenAPI :data:`bearer_scheme`;
* :data:`TenantId` and :data:`TenantAccess`, the path parameter and the caller of a
  tenant's routes.
"""

from __future__ import annotations

from processors.auth.dependencies import (
    TenantAccess,
    TenantId,
    bearer_scheme,
    current_principal,
    get_token_verifier,
    require_platform_admin,
    require_tenant_access,
)
from processors.auth.principal import TENANT_ID_PATTERN, Principal, Role
from processors.auth.tokens import (
    InvalidTokenError,
    SigningKeySource,
    SigningKeysUnavailableError,
    TokenVerifier,
)

__all__ = [
    "TENANT_ID_PATTERN",
    "InvalidTokenError",
    "Principal",
    "Role",
    "SigningKeySource",
    "SigningKeysUnavailableError",
    "TenantAccess",
    "TenantId",
    "TokenVerifier",
    "bearer_scheme",
    "current_principal",
    "get_token_verifier",
    "require_platform_admin",
    "require_tenant_access",
]
