"""Pipedrive (API v2, notes through v1): the ``pipedrive`` connector."""

from __future__ import annotations

from connectors.pipedrive.api import PipedriveOptions
from connectors.pipedrive.auth import OAuthTokens, TokenRefreshedHook
from connectors.pipedrive.config import PipedriveConnectionConfig, PipedrivePlan
from connectors.pipedrive.sink import PipedriveSink

__all__ = [
    "OAuthTokens",
    "PipedriveConnectionConfig",
    "PipedriveOptions",
    "PipedrivePlan",
    "PipedriveSink",
    "TokenRefreshedHook",
]
