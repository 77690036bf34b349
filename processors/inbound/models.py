"""The records of the inbound path, as JSON on their topics (keyed by tenant id).

- :class:`InboundEvent` on ``integrations.inbound``: one verified interest highlight, written
  by the API's intake, read by the inbound agent.

Every field is bounded; a record that does not validate is the reader's to dead-letter, never
a reason to stop a partition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.base.inbound import InboundCompany

__all__ = ["InboundEvent"]

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class InboundEvent(BaseModel):
    """One verified interest highlight of a partner, for one tenant's connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inbound_id: str = Field(pattern=r"^in_[0-9a-f]{32}$")
    """Ours: derived from the tenant, connection and partner event id (the same highlight
    received twice has the same id)."""
    kind: Literal["company.interest"] = "company.interest"
    tenant_id: str = Field(pattern=_ID)
    connector: str = Field(pattern=_ID)
    connection_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    partner_event_id: str = Field(min_length=1, max_length=512)
    company: InboundCompany
    note: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime | None = None
    received_at: datetime
    correlation_id: str = Field(min_length=1, max_length=128)
