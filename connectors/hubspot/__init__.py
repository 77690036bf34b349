"""HubSpot CRM: the ``hubspot`` connector (companies, contacts, associations, notes)."""

from __future__ import annotations

from connectors.hubspot.api import HubSpotOptions
from connectors.hubspot.config import (
    HubSpotConnectionConfig,
    HubSpotOAuth,
    HubSpotPrivateApp,
    HubSpotTier,
)
from connectors.hubspot.sink import HubSpotSink

__all__ = [
    "HubSpotConnectionConfig",
    "HubSpotOAuth",
    "HubSpotOptions",
    "HubSpotPrivateApp",
    "HubSpotSink",
    "HubSpotTier",
]
