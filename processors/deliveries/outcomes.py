"""The outcome table: what one failed delivery attempt becomes.

:func:`failure_outcome` is a pure function (no I/O, no engine state, no clock: the caller
passes ``now``): from the connector's error, whether the partner was called, the attempts
made so far, when the first attempt was, and the retry policy, it decides the record's next
step. The delivery engine (:mod:`processors.deliveries.engine`) carries the decision out;
:mod:`processors.deliveries.outputs` writes it.

==============================  =====================  ================================
the failure                     the record             the destination
==============================  =====================  ================================
not attempted (the sink never   deferred, no attempt   (a backpressure hint is the
called the partner)             spent, its history     delay; otherwise the shortest
                                unchanged              deferral)
:class:`EndpointGoneError`      dead-lettered          marked ``gone``
:class:`QuotaExhaustedError`    parked until the       -
                                reset, no attempt
                                spent, history kept
:class:`HeldForReviewError`     held for review (its   -
                                outcome recorded, not
                                rescheduled)
:class:`AuthenticationError`    parked for the         marked ``needs_reauth``
                                recheck interval, the
                                attempt counted
:class:`PermanentError`         dead-lettered          -
any other (transient)           retried after the      -
                                policy's delay, or
                                dead-lettered once the
                                policy's budget is
                                spent
==============================  =====================  ================================

The destination's failing-breaker (:mod:`processors.deliveries.breaker`) is not a row here:
the table decides each record, while the breaker counts whole batches (the engine feeds it
after the table's decisions); a record of a failing destination never reaches the table unless
it is the probe, and is written back as ``waiting`` instead.

Every attempted failure adds one entry to the record's error history (``history``), with the
partner's wait hint bounded again (a connector may have built its error around a partner's
number). The age budget that applies to every wait (a park or a retry that would end after
``retry_timeout_seconds`` dead-letters the record) is enforced where the wait is written,
in :meth:`processors.deliveries.outputs.OutcomeWriter.reschedule`, for every kind of wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from connectors.base import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    HeldForReviewError,
    PermanentError,
    QuotaExhaustedError,
    bounded_wait,
)
from processors.deliveries.models import AttemptError
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.state import ConnectionHealth

__all__ = ["DeadLetter", "FailureOutcome", "Hold", "Reschedule", "failure_outcome"]


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Write the record's next hop to the retry topic, ``delay`` seconds from now.

    ``kind`` is the hop's kind (``deferred``, ``retry``, ``parked``); ``attempts_made`` the
    attempt count the hop carries; ``last_error`` the error its delivery record reports.
    """

    kind: Literal["deferred", "retry", "parked"]
    delay: float
    attempts_made: int
    last_error: AttemptError | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Dead-letter the record now with ``error`` (its last history entry, completed)."""

    error: AttemptError
    attempts_made: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Record the delivery as held for review (acknowledged, not rescheduled)."""

    error: AttemptError
    attempts_made: int


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """One row of the outcome table, filled in for one failure.

    ``step`` is what happens to the record; ``history`` the entry to add to its error history
    (None when the partner was not called); ``mark`` the health to record for the destination
    (None: unchanged); ``wait_scope`` the rate-limit wait it counts as
    (``qi_rate_limit_waits_total``), if any.
    """

    step: Reschedule | DeadLetter | Hold
    history: AttemptError | None = None
    mark: ConnectionHealth | None = None
    wait_scope: str | None = None


def failure_outcome(
    error: ConnectorError,
    *,
    attempted: bool,
    attempts_made: int,
    first_attempt_at: float,
    now: float,
    policy: RetryPolicy,
    defer_seconds: float,
    park_recheck_seconds: float,
) -> FailureOutcome:
    """What a failed attempt becomes (see the table in the module docstring).

    ``attempts_made`` counts the attempts before this one; ``first_attempt_at`` (epoch
    seconds) is when the record's first attempt started, this one if it is the first;
    ``defer_seconds`` is the deferral when the partner was not called and gave no hint.
    """
    if not attempted:
        hint = error.retry_after if isinstance(error, BackpressureError) else None
        deferral = Reschedule("deferred", hint or defer_seconds, attempts_made)
        return FailureOutcome(deferral, wait_scope="connection")
    attempt = attempts_made + 1
    retry_after = bounded_wait(getattr(error, "retry_after", None), maximum=MAX_RETRY_AFTER_SECONDS)
    history = AttemptError(
        attempt=attempt,
        at=datetime.fromtimestamp(now, UTC),
        error_class=type(error).__name__,
        reason=error.reason,
        status_code=error.status_code,
        retry_after_s=retry_after,
    )
    if isinstance(error, EndpointGoneError):
        return FailureOutcome(DeadLetter(history, attempt), history, mark=ConnectionHealth.GONE)
    if isinstance(error, QuotaExhaustedError):
        park = Reschedule("parked", error.retry_after, attempts_made, last_error=history)
        return FailureOutcome(park, history, wait_scope="quota")
    if isinstance(error, HeldForReviewError):
        return FailureOutcome(Hold(history, attempt), history)
    if isinstance(error, AuthenticationError):
        park = Reschedule("parked", park_recheck_seconds, attempt)
        return FailureOutcome(park, history, mark=ConnectionHealth.NEEDS_REAUTH)
    if isinstance(error, PermanentError):
        return FailureOutcome(DeadLetter(history, attempt), history)
    decision = policy.decide(
        attempts_made=attempt, first_attempt_at=first_attempt_at, now=now, retry_after=retry_after
    )
    if decision.retry:
        retry = Reschedule("retry", decision.delay_seconds, attempt, last_error=history)
        return FailureOutcome(retry, history)
    exhausted = history.model_copy(update={"reason": f"{history.reason}; {decision.reason}"})
    return FailureOutcome(DeadLetter(exhausted, attempt), history)
