"""Tenants: the integrations allowlist and one connection per connector per tenant."""

from __future__ import annotations

from processors.tenants.models import (
    ConnectionRecord,
    Connector,
    DeliveryMode,
    TenantRouting,
)
from processors.tenants.repository import ConnectionRepository

__all__ = [
    "ConnectionRecord",
    "ConnectionRepository",
    "Connector",
    "DeliveryMode",
    "TenantRouting",
]
