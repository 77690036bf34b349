"""Routing: domain events in, one contract export per connection and destination that take it."""

from __future__ import annotations

from processors.routing.destinations import destination_label, export_destinations
from processors.routing.idempotency import delivery_id_for, idempotency_key
from processors.routing.mapping import EVENT_FAMILIES, MappedRecord, format_timestamp, map_event
from processors.routing.parsing import InvalidEventError, InvalidReason, parse_domain_event
from processors.routing.service import (
    IncomingRecord,
    OutgoingRecord,
    RoutingReport,
    RoutingService,
)

__all__ = [
    "EVENT_FAMILIES",
    "IncomingRecord",
    "InvalidEventError",
    "InvalidReason",
    "MappedRecord",
    "OutgoingRecord",
    "RoutingReport",
    "RoutingService",
    "delivery_id_for",
    "destination_label",
    "export_destinations",
    "format_timestamp",
    "idempotency_key",
    "map_event",
    "parse_domain_event",
]
