"""Pipedrive (API v2, notes through v1): the ``pipedrive`` connector."""

from __future__ import annotations

from connectors.pipedrive.api import PipedriveOptions
from connectors.pipedrive.config import PipedriveConnectionConfig, PipedrivePlan
from connectors.pipedrive.sink import PipedriveSink

__all__ = ["PipedriveConnectionConfig", "PipedriveOptions", "PipedrivePlan", "PipedriveSink"]
