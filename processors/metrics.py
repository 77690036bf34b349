"""Prometheus metrics of the worker and the API.

Labels never carry personal data or payload values; tenant ids are not labels (an operator can
add them to dashboards from delivery records instead).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "EVENTS_CONSUMED",
    "EVENTS_INVALID",
    "EVENTS_MAPPED",
    "EVENTS_SKIPPED",
    "EXPORTS_PRODUCED",
    "ROUTING_BATCH_SECONDS",
]

EVENTS_CONSUMED = Counter(
    "qi_events_consumed", "Domain event records consumed by the routing agent."
)
EVENTS_MAPPED = Counter(
    "qi_events_mapped", "Domain events validated and mapped to contracts.", ["event_type"]
)
EVENTS_INVALID = Counter(
    "qi_events_invalid", "Domain event records dead-lettered as invalid, by reason.", ["reason"]
)
EVENTS_SKIPPED = Counter(
    "qi_events_skipped", "Valid domain events that produced no export, by reason.", ["reason"]
)
EXPORTS_PRODUCED = Counter(
    "qi_exports_produced",
    "Contract records produced to export topics.",
    ["connector", "event_type"],
)
ROUTING_BATCH_SECONDS = Histogram(
    "qi_routing_batch_seconds",
    "Time to route one batch of domain events, Redis lookups and produce included.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
