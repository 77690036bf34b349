"""The connector plugin interface shared by every partner connector.

Import from here, not from the modules: this ``__all__`` is the supported surface.
"""

from __future__ import annotations

from connectors.base.api import (
    AuthInput,
    ConnectionOptions,
    EndpointOptions,
    OAuthInstallInput,
    PlainSecret,
    secrets_required,
)
from connectors.base.config import (
    ConnectionConfig,
    allows_private_networks,
    check_url,
    reveal_secret,
)
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
from connectors.base.oauth import (
    GrantStore,
    OAuthCredentials,
    OAuthGrant,
    OAuthTokenSource,
    StaticToken,
    TokenSource,
    TokenSourceOptions,
    bearer,
    options_from,
)
from connectors.base.ratelimit import RateLimit, TokenBucket
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
    "AuthInput",
    "AuthenticationError",
    "BackpressureError",
    "BaseSink",
    "BatchOutcome",
    "BatchingSink",
    "Clock",
    "ConnectionConfig",
    "ConnectionOptions",
    "ConnectorError",
    "CredentialsAccessor",
    "DeliveryResult",
    "EndpointGoneError",
    "EndpointOptions",
    "EntityKind",
    "GrantStore",
    "HeldForReviewError",
    "HttpClientFactory",
    "IdentityCandidate",
    "IdentityDecision",
    "IdentityOutcome",
    "IdentityResolver",
    "OAuthCredentials",
    "OAuthGrant",
    "OAuthInstallInput",
    "OAuthTokenSource",
    "OutboundRecord",
    "PermanentError",
    "PlainSecret",
    "QuotaExhaustedError",
    "RateLimit",
    "RecordFailure",
    "SinkContext",
    "StaticCredentials",
    "StaticToken",
    "SystemClock",
    "TokenBucket",
    "TokenSource",
    "TokenSourceOptions",
    "TransientError",
    "allows_private_networks",
    "bearer",
    "bounded_wait",
    "check_url",
    "endpoint_label",
    "http_client_factory",
    "options_from",
    "parse_retry_after",
    "raise_for_response",
    "reveal_secret",
    "secrets_required",
    "translate_http_errors",
]
