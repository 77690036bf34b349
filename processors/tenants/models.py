"""Connection configuration as the router and the delivery agents read it.

A connection is unique per ``(tenant_id, connector)``. ``settings`` holds the connector's own
block (for a webhook connection its URL and, encrypted, its secret); the connector declares
and validates it. Event types left out of ``event_types`` are enabled. Informational and legacy
signals are exported unless ``export_non_strict_signals`` is false.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from processors.domain.events import ContractMode, EventType

__all__ = ["ConnectionRecord", "Connector", "DeliveryMode", "TenantRouting", "new_connection_id"]


class Connector(StrEnum):
    """The destinations a tenant can connect."""

    WEBHOOK = "webhook"
    HUBSPOT = "hubspot"
    PIPEDRIVE = "pipedrive"


class DeliveryMode(StrEnum):
    """``api`` calls the partner API, ``webhook`` pushes the contract to the tenant's own signed
    endpoint, ``both`` does both."""

    API = "api"
    WEBHOOK = "webhook"
    BOTH = "both"


def new_connection_id() -> str:
    """A fresh, opaque connection id."""
    return f"conn_{uuid.uuid4().hex}"


def _now() -> datetime:
    return datetime.now(UTC)


class ConnectionRecord(BaseModel):
    """One tenant's connection to one connector, as stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    connector: Connector
    connection_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,80}$")] = Field(
        default_factory=new_connection_id
    )
    enabled: bool = True
    delivery_mode: DeliveryMode = DeliveryMode.API
    event_types: dict[EventType, bool] = Field(default_factory=dict)
    export_non_strict_signals: bool = True
    mapping_policy_version: int = Field(default=1, ge=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    def exports(self, event_type: EventType, *, contract_mode: ContractMode | None = None) -> bool:
        """Whether this connection takes events of this type (and signal contract mode)."""
        if not self.enabled or not self.event_types.get(event_type, True):
            return False
        return not (
            contract_mode is not None
            and contract_mode is not ContractMode.STRICT
            and not self.export_non_strict_signals
        )


@dataclass(frozen=True, slots=True)
class TenantRouting:
    """What the router needs to know of one tenant, loaded in one round trip per batch."""

    tenant_id: str
    allowlisted: bool
    connections: list[ConnectionRecord] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Connectors whose stored connection record does not validate (a corrupt or hand-edited
    value): the tenant's events are dead-lettered until it is written again."""
