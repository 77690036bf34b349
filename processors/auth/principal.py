"""Who is calling: the principal a verified bearer token describes, and what it may reach.

Roles (DESIGN.md "Tenancy and configuration"):

- ``tenant_admin`` reads and changes its own tenant's connections only (the ``tenant_id``
  claim of its token);
- ``platform_admin`` may bootstrap, override and support any tenant, and holds the allowlist.

Roles a token names that this service does not know are dropped: a token with no known role
authenticates (it is a valid token) but is allowed nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["TENANT_ID_PATTERN", "Principal", "Role"]

TENANT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
"""A tenant id, as everywhere in the service (``ConnectionRecord.tenant_id``)."""


class Role(StrEnum):
    """The roles this service knows."""

    TENANT_ADMIN = "tenant_admin"
    PLATFORM_ADMIN = "platform_admin"


class Principal(BaseModel):
    """The caller, from the claims of a verified token (``sub``, ``tenant_id``, ``roles``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sub: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    tenant_id: Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)] | None = None
    roles: frozenset[Role] = frozenset()

    @property
    def is_platform_admin(self) -> bool:
        return Role.PLATFORM_ADMIN in self.roles

    def can_access_tenant(self, tenant_id: str) -> bool:
        """Platform admins reach every tenant; tenant admins only the one in their token."""
        if self.is_platform_admin:
            return True
        return Role.TENANT_ADMIN in self.roles and self.tenant_id == tenant_id
