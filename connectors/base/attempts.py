"""Timing and logging of delivery attempts, the same for every connector.

- :func:`ms_since`: a duration in milliseconds, rounded to a tenth, from a monotonic start
  (every ``duration_ms`` a connector logs or reports).
- :func:`seconds_until_midnight_utc`: the wait until the next 00:00 UTC, where a partner's
  daily quota resets (or is assumed to, when the account's time zone is not known).
- :class:`Attempt`: one attempt to deliver one record. It logs ``delivery.attempt.failed``
  (warning, with the error's safe context) or ``delivery.attempt.delivered`` (info) with
  the record's log fields, the status code and the duration, and builds the
  :class:`~connectors.base.sink.DeliveryResult`. Never payloads, tokens or personal data:
  only what :meth:`OutboundRecord.log_fields` and :meth:`ConnectorError.log_fields` give.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from connectors.base.context import Clock
from connectors.base.errors import ConnectorError
from connectors.base.sink import DeliveryResult

__all__ = ["Attempt", "ms_since", "seconds_until_midnight_utc"]

_DAY_SECONDS: Final[int] = 86_400


def ms_since(started: float, clock: Clock) -> float:
    """Milliseconds from ``started`` (the clock's monotonic seconds) to now, to a tenth."""
    return round((clock.monotonic() - started) * 1000, 1)


def seconds_until_midnight_utc(now: float) -> float:
    """Seconds from Unix time ``now`` to the next 00:00 UTC (a full day at midnight itself)."""
    next_midnight = (math.floor(now) // _DAY_SECONDS + 1) * _DAY_SECONDS
    return float(next_midnight - now)


@dataclass(slots=True)
class Attempt:
    """One attempt to deliver one record, timed from creation (or :meth:`restart`)."""

    clock: Clock
    logger: logging.Logger
    fields: Mapping[str, Any]
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock.monotonic()

    def restart(self) -> None:
        """Time the attempt itself from now, not the waits before it."""
        self.started = self.clock.monotonic()

    def failed(self, error: ConnectorError) -> None:
        """Log the failure; the caller raises or reports ``error``."""
        self.logger.warning(
            "delivery.attempt.failed",
            extra={**self.fields, **error.log_fields(), "duration_ms": self.elapsed_ms()},
        )

    def delivered(
        self, delivery_id: str, status_code: int, *, partner_object_id: str | None = None
    ) -> DeliveryResult:
        """Log the delivery and return its result."""
        duration_ms = self.elapsed_ms()
        extra: dict[str, Any] = {**self.fields, "status_code": status_code}
        if partner_object_id is not None:
            extra["partner_object_id"] = partner_object_id
        self.logger.info("delivery.attempt.delivered", extra={**extra, "duration_ms": duration_ms})
        return DeliveryResult(
            delivery_id=delivery_id,
            status_code=status_code,
            duration_ms=duration_ms,
            partner_object_id=partner_object_id,
        )

    def elapsed_ms(self) -> float:
        """Milliseconds since the attempt started."""
        return ms_since(self.started, self.clock)
