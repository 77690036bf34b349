"""Every connector the service can run, declared explicitly (no import-time discovery).

To add a connector, import its sink and config here and add one :class:`ConnectorSpec`
to :data:`CONNECTORS`. A spec must agree with its sink's class attributes; that is
checked when the module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from connectors.base.config import ConnectionConfig
from connectors.base.ratelimit import RateLimit
from connectors.base.sink import BaseSink
from connectors.hubspot import HubSpotConnectionConfig, HubSpotSink
from connectors.pipedrive import PipedriveConnectionConfig, PipedriveSink
from connectors.webhook.config import WebhookConnectionConfig
from connectors.webhook.sink import WebhookSink

__all__ = ["CONNECTORS", "ConnectorSpec", "UnknownConnectorError", "get_connector"]


class UnknownConnectorError(LookupError):
    """No connector is registered under that name."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectorSpec:
    """What the service needs to know to run one connector.

    ``default_rate_limit`` sizes a connection's token bucket when its config sets none;
    ``max_batch_size`` is the partner's bulk limit (records per ``write``).
    """

    name: str
    sink_class: type[BaseSink[Any]]
    config_class: type[ConnectionConfig]
    max_batch_size: int
    default_rate_limit: RateLimit | None

    def __post_init__(self) -> None:
        sink = self.sink_class
        mismatches = [
            attribute
            for attribute, declared in (
                ("name", self.name),
                ("config_class", self.config_class),
                ("max_batch_size", self.max_batch_size),
                ("default_rate_limit", self.default_rate_limit),
            )
            if getattr(sink, attribute) != declared
        ]
        if mismatches:
            msg = f"connector spec {self.name!r} disagrees with {sink.__name__} on {mismatches}"
            raise ValueError(msg)
        if self.max_batch_size < 1:
            msg = "max_batch_size must be at least 1"
            raise ValueError(msg)


CONNECTORS: Mapping[str, ConnectorSpec] = MappingProxyType(
    {
        "webhook": ConnectorSpec(
            name="webhook",
            sink_class=WebhookSink,
            config_class=WebhookConnectionConfig,
            max_batch_size=1,
            default_rate_limit=RateLimit(rate=10, per_seconds=1),
        ),
        "hubspot": ConnectorSpec(
            name="hubspot",
            sink_class=HubSpotSink,
            config_class=HubSpotConnectionConfig,
            max_batch_size=100,
            default_rate_limit=RateLimit(rate=100, per_seconds=10),
        ),
        "pipedrive": ConnectorSpec(
            name="pipedrive",
            sink_class=PipedriveSink,
            config_class=PipedriveConnectionConfig,
            max_batch_size=1,
            default_rate_limit=RateLimit(rate=20, per_seconds=2),
        ),
    }
)


def get_connector(name: str) -> ConnectorSpec:
    """The spec registered under ``name``; raises :class:`UnknownConnectorError`."""
    try:
        return CONNECTORS[name]
    except KeyError:
        msg = f"unknown connector {name!r}"
        raise UnknownConnectorError(msg) from None
