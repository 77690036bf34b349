"""The connector plugin interface shared by every partner connector.

Import from here, not from the modules: this ``__all__`` is the supported surface.
"""

from __future__ import annotations

from connectors.base.attempts import Attempt, ms_since, seconds_until_midnight_utc
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
    ErrorContext,
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
    header_number,
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
from connectors.base.tracing import (
    CORRELATION_ID_HEADER,
    REQUEST_ID_HEADER,
    Correlated,
    carrying,
    trace_headers,
)

__all__ = [
    "CORRELATION_ID_HEADER",
    "MAX_RETRY_AFTER_SECONDS",
    "REQUEST_ID_HEADER",
    "USER_AGENT",
    "Attempt",
    "AuthenticationError",
    "BackpressureError",
    "BaseSink",
    "BatchOutcome",
    "BatchingSink",
    "Clock",
    "ConnectionConfig",
    "ConnectorError",
    "Correlated",
    "CredentialsAccessor",
    "DeliveryResult",
    "EndpointGoneError",
    "EntityKind",
    "ErrorContext",
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
    "carrying",
    "endpoint_label",
    "header_number",
    "http_client_factory",
    "ms_since",
    "parse_retry_after",
    "raise_for_response",
    "reveal_secret",
    "seconds_until_midnight_utc",
    "take_or_defer",
    "trace_headers",
    "translate_http_errors",
]
