"""Typed delivery outcomes that connectors raise or report per record.

The error tree::

    ConnectorError                  root; never raised bare by a connector
    ├── TransientError              retry later (timeouts, connection errors, 408, 425,
    │   │                           423, 5xx); may carry ``retry_after`` seconds
    │   └── BackpressureError       slow down: the partner is rate limiting us (429, 502,
    │                               504, our own token bucket); ``retry_after`` is required
    ├── PermanentError              dead-letter now (other 4xx, 3xx, contract violations,
    │   │                           refused destinations)
    │   └── EndpointGoneError       410 Gone: disable the connection
    ├── AuthenticationError         401: refresh the credentials once, then park the
    │                               connection as ``needs_reauth`` with its records held
    ├── QuotaExhaustedError         the partner's quota for a period is spent: park the
    │                               connection's records until ``retry_after`` (the reset)
    └── HeldForReviewError          an ambiguous identity match: nothing written, the record
                                    waits for a review decision

Why this shape:

- ``BackpressureError`` is a ``TransientError`` so a caller that only knows "transient"
  still schedules a retry; a caller that knows backpressure also pauses the connection.
- ``EndpointGoneError`` is a ``PermanentError`` so a caller that does not know it still
  dead-letters the record rather than retrying into a gone endpoint; the delivery service
  catches it first to disable the connection (Standard Webhooks: "410 Gone ... disable").
- ``AuthenticationError`` is deliberately neither: invalid credentials must neither burn
  records through the retry budget nor send them to the dead-letter topic, so a caller
  must handle it explicitly (refresh once, then hold the records and park the connection).

Wait hints are bounded here, whoever computed them: ``retry_after`` of a transient or
backpressure error is at most :data:`MAX_RETRY_AFTER_SECONDS` (one hour; a larger or infinite
value becomes one hour), a quota reset at most :data:`MAX_QUOTA_RESET_SECONDS` (a day and an
hour), and a NaN or negative value means "no wait" (``0.0``). Constructing an error never
raises on a partner's number: a hint is a bounded wait, never a crash or a wait of years.
The delivery engine also keeps every wait inside the record's retry budget.

Every error carries keyword context that is safe to log: ``partner`` (connector name),
``endpoint`` (host or path only: any query string, fragment or user info is stripped
here as a last line of defence), ``status_code`` and a short ``reason``. Never put
payloads, tokens or personal data in any of them. :meth:`ConnectorError.log_fields`
returns them ready for ``logger.warning(..., extra=...)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final, TypedDict, Unpack

__all__ = [
    "MAX_QUOTA_RESET_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "AuthenticationError",
    "BackpressureError",
    "ConnectorError",
    "EndpointGoneError",
    "ErrorContext",
    "HeldForReviewError",
    "PermanentError",
    "QuotaExhaustedError",
    "TransientError",
    "bounded_wait",
]


def _strip_endpoint(endpoint: str | None) -> str | None:
    """Keep only ``host`` and ``path`` of an endpoint, dropping credentials and queries."""
    if endpoint is None:
        return None
    stripped = endpoint.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = stripped.partition("://")
    if not sep:
        scheme, rest = "", stripped
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    cleaned = f"{authority}{slash}{path}"
    return f"{scheme}://{cleaned}" if scheme else cleaned


MAX_RETRY_AFTER_SECONDS: Final[float] = 3600.0
"""The longest wait a transient or backpressure error asks for (``Retry-After`` is capped)."""
MAX_QUOTA_RESET_SECONDS: Final[float] = 25 * 3600.0
"""The longest wait a spent quota asks for: daily quotas reset within a day."""


def bounded_wait(seconds: float | None, *, maximum: float) -> float | None:
    """``seconds`` as a wait in ``[0, maximum]``: NaN and negatives are ``0.0``, larger
    values (infinity included) are ``maximum``; ``None`` stays ``None``. Never raises."""
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except OverflowError:  # an integer past the float range
        value = math.inf if seconds > 0 else 0.0
    if math.isnan(value) or value <= 0:
        return 0.0
    return min(value, maximum)


def _check_retry_after(retry_after: float | None) -> float | None:
    return bounded_wait(retry_after, maximum=MAX_RETRY_AFTER_SECONDS)


class ErrorContext(TypedDict, total=False):
    """The keyword context every connector error takes (see the module docstring)."""

    partner: str | None
    endpoint: str | None
    status_code: int | None


class ConnectorError(Exception):
    """Root of every failure a connector reports.

    Raised from :meth:`BaseSink.write` it means the whole batch failed with this outcome;
    returned inside a ``RecordFailure`` it concerns that one record only.
    """

    default_reason: ClassVar[str] = "connector error"

    def __init__(
        self,
        reason: str | None = None,
        *,
        partner: str | None = None,
        endpoint: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.reason = reason or self.default_reason
        self.partner = partner
        self.endpoint = _strip_endpoint(endpoint)
        self.status_code = status_code
        super().__init__(self.reason)

    def _context(self) -> dict[str, Any]:
        return {
            "partner": self.partner,
            "endpoint": self.endpoint,
            "status_code": self.status_code,
        }

    def log_fields(self) -> dict[str, Any]:
        """Fields for structured logging (``extra=``); all of them are safe to log."""
        fields: dict[str, Any] = {"error_class": type(self).__name__, "reason": self.reason}
        fields.update({key: value for key, value in self._context().items() if value is not None})
        return fields

    def __str__(self) -> str:
        context = ", ".join(
            f"{key}={value}" for key, value in self._context().items() if value is not None
        )
        return f"{self.reason} ({context})" if context else self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransientError(ConnectorError):
    """Retry later: the partner may accept the same request after a while.

    ``retry_after`` (seconds) is the partner's hint (``Retry-After``, reset headers) or our
    own lower bound; ``None`` lets the retry policy choose its backoff.
    """

    default_reason: ClassVar[str] = "transient failure"

    def __init__(
        self,
        reason: str | None = None,
        *,
        retry_after: float | None = None,
        **where: Unpack[ErrorContext],
    ) -> None:
        super().__init__(reason, **where)
        self.retry_after = _check_retry_after(retry_after)

    def _context(self) -> dict[str, Any]:
        return {**super()._context(), "retry_after": self.retry_after}


class BackpressureError(TransientError):
    """Slow down: the partner (or our own token bucket) is rate limiting this connection.

    The caller pauses the connection for ``retry_after`` seconds and retries the records;
    the attempt is not the record's fault.
    """

    default_reason: ClassVar[str] = "rate limited"
    retry_after: float

    def __init__(
        self, reason: str | None = None, *, retry_after: float, **where: Unpack[ErrorContext]
    ) -> None:
        super().__init__(reason, retry_after=retry_after, **where)


class PermanentError(ConnectorError):
    """Dead-letter now: sending the same request again cannot succeed."""

    default_reason: ClassVar[str] = "permanent failure"


class EndpointGoneError(PermanentError):
    """The partner answered 410 Gone: disable the connection and stop sending to it."""

    default_reason: ClassVar[str] = "endpoint gone"


class AuthenticationError(ConnectorError):
    """The partner rejected our credentials (401).

    The caller refreshes the credentials once and retries; if they are still rejected it
    parks the connection as ``needs_reauth`` and holds its records (no retries, no DLQ).
    """

    default_reason: ClassVar[str] = "authentication failed"


class QuotaExhaustedError(ConnectorError):
    """The partner's quota for a period is spent (Pipedrive's daily token budget).

    Neither transient nor permanent: retrying before ``retry_after`` seconds (the reset)
    only earns more refusals, so the caller parks the connection's records until then,
    spending no attempt and dead-lettering nothing.
    """

    default_reason: ClassVar[str] = "partner quota exhausted until its reset"
    retry_after: float

    def __init__(
        self, reason: str | None = None, *, retry_after: float, **where: Unpack[ErrorContext]
    ) -> None:
        super().__init__(reason, **where)
        self.retry_after = bounded_wait(retry_after, maximum=MAX_QUOTA_RESET_SECONDS) or 0.0


class HeldForReviewError(ConnectorError):
    """The record's entity matched ambiguously: nothing was written to the partner, and a
    review entry was queued (see :mod:`connectors.base.identity`). The caller holds the
    record; a review decision (confirm, link, unlink) re-delivers it."""

    default_reason: ClassVar[str] = "identity match held for review"
