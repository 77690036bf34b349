"""Prometheus metrics of the worker and the API.

Labels never carry personal data or payload values; tenant ids are not labels (an operator can
add them to dashboards from delivery records instead).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ATTEMPT_SECONDS",
    "BACKEND_RETRIES",
    "CONFIG_LOST",
    "CONNECTIONS_FAILING",
    "CONNECTIONS_PARKED",
    "CONNECTION_STATE_CHANGES",
    "CONSUMER_LAG",
    "DELIVERIES",
    "DLQ_RECORDS",
    "EVENTS_CONSUMED",
    "EVENTS_INVALID",
    "EVENTS_MAPPED",
    "EVENTS_SKIPPED",
    "EXPORTS_PRODUCED",
    "INBOUND",
    "INBOUND_RESOLVED",
    "LANE_DEPTH",
    "PARTNER_429",
    "RATE_LIMIT_WAITS",
    "RETRIES_SCHEDULED",
    "REVOKED_DROPPED",
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

BACKEND_RETRIES = Counter(
    "qi_backend_retries",
    "Redis or Kafka operations that failed and are tried again (nothing acknowledged meanwhile),"
    " by component and error class.",
    ["component", "error"],
)
CONFIG_LOST = Gauge(
    "qi_config_lost",
    "1 while the routing agent finds no configuration epoch in Redis (configuration lost or never"
    " written) and holds its partitions; 0 otherwise.",
)
CONSUMER_LAG = Gauge(
    "qi_consumer_lag",
    "Records the worker's consumer group has yet to read, by group, topic and partition: the high"
    " watermark minus the committed offset (from the low watermark when nothing is committed)."
    " Every worker exports the whole group's lag (processors.consumerlag).",
    ["group", "topic", "partition"],
)

INBOUND_RESOLVED = Counter(
    "qi_inbound_resolved",
    "Inbound highlights handled by the inbound agent, by outcome (bookmark.<strategy>,"
    " review.<reason>, duplicate, dead_letter.<reason>).",
    ["outcome"],
)
DELIVERIES = Counter(
    "qi_deliveries",
    "Delivery attempt outcomes, by connector and outcome.",
    ["connector", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "qi_delivery_attempt_seconds",
    "Duration of one call to a partner or webhook endpoint.",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RETRIES_SCHEDULED = Counter(
    "qi_retries_scheduled",
    "Deliveries re-scheduled on the retry topic, by kind (retry, deferred, parked, requeued).",
    ["connector", "kind"],
)
REVOKED_DROPPED = Counter(
    "qi_revoked_dropped",
    "Deliveries dropped unacknowledged from lanes or the retry buffer because their partition"
    " was revoked (the partition's next owner reads them again), by connector and where.",
    ["connector", "held_in"],
)
DLQ_RECORDS = Counter(
    "qi_dlq_records",
    "Deliveries dead-lettered, by connector and error class.",
    ["connector", "error"],
)
RATE_LIMIT_WAITS = Counter(
    "qi_rate_limit_waits",
    "Times a delivery waited for or was deferred by a rate limit.",
    ["connector", "limit"],
)
PARTNER_429 = Counter("qi_partner_429", "Responses 429 from partners.", ["connector"])
LANE_DEPTH = Gauge(
    "qi_lane_depth", "Deliveries waiting in per-connection lanes (all connections).", ["connector"]
)
CONNECTIONS_PARKED = Counter(
    "qi_connections_parked",
    "Connections parked (needs re-authorisation or gone).",
    ["connector", "state"],
)
CONNECTIONS_FAILING = Gauge(
    "qi_connections_failing",
    "Destinations this worker currently holds as failing (breaker open), by connector.",
    ["connector"],
)
CONNECTION_STATE_CHANGES = Counter(
    "qi_connection_state_changes",
    "Destination state changes made by this worker, by connector and new state (failing,"
    " enabled, disabled, parked, needs_reauth).",
    ["connector", "state"],
)
INBOUND = Counter(
    "qi_inbound",
    "Partner webhook requests received (POST /webhooks/...), by connector (``unknown`` for a"
    " name no connector has) and outcome (accepted, duplicate, or the reason of the refusal).",
    ["connector", "outcome"],
)
