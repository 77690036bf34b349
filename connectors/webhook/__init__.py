"""Generic signed webhooks (Standard Webhooks): the ``webhook`` connector."""

from __future__ import annotations

from connectors.webhook.api import WebhookEndpointIn
from connectors.webhook.config import WebhookConnectionConfig
from connectors.webhook.sink import WebhookSink

__all__ = [
    "WebhookConnectionConfig",
    "WebhookEndpointIn",
    "WebhookSink",
]
