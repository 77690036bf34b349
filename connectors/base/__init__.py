"""The connector plugin interface shared by every partner connector.

Import from here, not from the modules: this ``__all__`` is the supported surface.
"""

from __future__ import annotations

from connectors.base.config import ConnectionConfig, allows_private_networks, reveal_secret
from connectors.base.context import (
    Clock,
    CredentialsAccessor,
    SinkContext,
    StaticCredentials,
    SystemClock,
)
from connectors.base.errors import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    HeldForReviewError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
    bounded_wait,
)
from connectors.base.http import (
    USER_AGENT,
    HttpClientFactory,
    endpoint_label,
    http_client_factory,
    parse_retry_after,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.identity import (
    EntityKind,
    IdentityCandidate,
    IdentityDecision,
    IdentityOutcome,
    IdentityResolver,
)
from connectors.base.ratelimit import (
    RateLimit,
    RatePolicy,
    RollingWindow,
    TokenBucket,
    take_or_defer,
)
from connectors.base.sink import (
    BaseSink,
    BatchingSink,
    BatchOutcome,
    DeliveryResult,
    OutboundRecord,
    RecordFailure,
)

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "USER_AGENT",
    "AuthenticationError",
    "BackpressureError",
    "BaseSink",
    "BatchOutcome",
    "BatchingSink",
    "Clock",
    "ConnectionConfig",
    "ConnectorError",
    "CredentialsAccessor",
    "DeliveryResult",
    "EndpointGoneError",
    "EntityKind",
    "HeldForReviewError",
    "HttpClientFactory",
    "IdentityCandidate",
    "IdentityDecision",
    "IdentityOutcome",
    "IdentityResolver",
    "OutboundRecord",
    "PermanentError",
    "QuotaExhaustedError",
    "RateLimit",
    "RatePolicy",
    "RecordFailure",
    "RollingWindow",
    "SinkContext",
    "StaticCredentials",
    "SystemClock",
    "TokenBucket",
    "TransientError",
    "allows_private_networks",
    "bounded_wait",
    "endpoint_label",
    "http_client_factory",
    "parse_retry_after",
    "raise_for_response",
    "reveal_secret",
    "take_or_defer",
    "translate_http_errors",
]
