"""The outcome table (:func:`processors.deliveries.outcomes.failure_outcome`), row by row.

Pure: no Redis, no Kafka, no engine; the policy's jitter is fixed (``rng`` returns 1.0, so a
retry's delay is the full exponential cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from connectors.base import (
    MAX_RETRY_AFTER_SECONDS,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    HeldForReviewError,
    PermanentError,
    QuotaExhaustedError,
    TransientError,
)
from processors.deliveries.models import AttemptError
from processors.deliveries.outcomes import (
    DeadLetter,
    FailureOutcome,
    Hold,
    Reschedule,
    failure_outcome,
)
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.state import ConnectionHealth

NOW = 10_000.0
FIRST = 9_990.0
DEFER = 2.0
RECHECK = 300.0
POLICY = RetryPolicy(
    max_attempts=5,
    timeout_seconds=3600,
    base_delay_seconds=2,
    max_delay_seconds=60,
    rng=lambda: 1.0,
)


def _history(
    error: ConnectorError, attempt: int, *, retry_after: float | None = None, reason: str = ""
) -> AttemptError:
    return AttemptError(
        attempt=attempt,
        at=datetime.fromtimestamp(NOW, UTC),
        error_class=type(error).__name__,
        reason=reason or error.reason,
        status_code=error.status_code,
        retry_after_s=retry_after,
    )


def _raw_hint(seconds: float) -> TransientError:
    """A transient error whose connector set an unbounded partner number after construction."""
    error = TransientError("slow down", status_code=429)
    error.retry_after = seconds
    return error


@dataclass(frozen=True)
class Row:
    name: str
    error: ConnectorError
    expected: FailureOutcome
    attempted: bool = True
    attempts_made: int = 1
    first_attempt_at: float = FIRST


_TRANSIENT = TransientError("bad gateway", status_code=502)
_THROTTLED = BackpressureError("bucket empty", retry_after=7.0)
_GONE = EndpointGoneError("gone", status_code=410)
_QUOTA = QuotaExhaustedError("daily quota", retry_after=7200.0, status_code=429)
_HELD = HeldForReviewError("two candidates")
_AUTH = AuthenticationError("token rejected", status_code=401)
_PERMANENT = PermanentError("bad request", status_code=400)
_HINTED = TransientError("too many", status_code=429, retry_after=30.0)
_HUGE = _raw_hint(1e308)

ROWS = [
    Row(
        "not attempted, no hint: deferred for the shortest deferral, no attempt spent",
        _TRANSIENT,
        FailureOutcome(Reschedule("deferred", DEFER, 1), wait_scope="connection"),
        attempted=False,
    ),
    Row(
        "not attempted, backpressure: deferred for its hint, no attempt spent",
        _THROTTLED,
        FailureOutcome(Reschedule("deferred", 7.0, 1), wait_scope="connection"),
        attempted=False,
    ),
    Row(
        "endpoint gone: dead-lettered, destination marked gone",
        _GONE,
        FailureOutcome(
            DeadLetter(_history(_GONE, 2), 2), _history(_GONE, 2), mark=ConnectionHealth.GONE
        ),
    ),
    Row(
        "quota spent: parked until the reset (the history bounds the hint), no attempt spent",
        _QUOTA,
        FailureOutcome(
            Reschedule(
                "parked",
                7200.0,
                1,
                last_error=_history(_QUOTA, 2, retry_after=MAX_RETRY_AFTER_SECONDS),
            ),
            _history(_QUOTA, 2, retry_after=MAX_RETRY_AFTER_SECONDS),
            wait_scope="quota",
        ),
    ),
    Row(
        "held for review: recorded as held",
        _HELD,
        FailureOutcome(Hold(_history(_HELD, 2), 2), _history(_HELD, 2)),
    ),
    Row(
        "authentication: parked for the recheck, attempt counted, destination needs reauth",
        _AUTH,
        FailureOutcome(
            Reschedule("parked", RECHECK, 2),
            _history(_AUTH, 2),
            mark=ConnectionHealth.NEEDS_REAUTH,
        ),
    ),
    Row(
        "permanent: dead-lettered at once",
        _PERMANENT,
        FailureOutcome(DeadLetter(_history(_PERMANENT, 2), 2), _history(_PERMANENT, 2)),
    ),
    Row(
        "transient inside the budget: retried after the policy's delay",
        _TRANSIENT,
        FailureOutcome(
            Reschedule("retry", 4.0, 2, last_error=_history(_TRANSIENT, 2)),
            _history(_TRANSIENT, 2),
        ),
    ),
    Row(
        "transient with a wait hint: the retry waits at least that long",
        _HINTED,
        FailureOutcome(
            Reschedule("retry", 30.0, 1, last_error=_history(_HINTED, 1, retry_after=30.0)),
            _history(_HINTED, 1, retry_after=30.0),
        ),
        attempts_made=0,
        first_attempt_at=NOW,
    ),
    Row(
        "transient with an unbounded hint: bounded to an hour, then past the age budget",
        _HUGE,
        FailureOutcome(
            DeadLetter(
                _history(
                    _HUGE,
                    2,
                    retry_after=MAX_RETRY_AFTER_SECONDS,
                    reason="slow down; retry budget spent: older than 3600s",
                ),
                2,
            ),
            _history(_HUGE, 2, retry_after=MAX_RETRY_AFTER_SECONDS),
        ),
    ),
    Row(
        "transient, attempts spent: dead-lettered with the budget in the reason",
        _TRANSIENT,
        FailureOutcome(
            DeadLetter(
                _history(_TRANSIENT, 5, reason="bad gateway; retry budget spent: 5 attempts"), 5
            ),
            _history(_TRANSIENT, 5),
        ),
        attempts_made=4,
    ),
    Row(
        "transient, too old: dead-lettered with the age budget in the reason",
        _TRANSIENT,
        FailureOutcome(
            DeadLetter(
                _history(_TRANSIENT, 2, reason="bad gateway; retry budget spent: older than 3600s"),
                2,
            ),
            _history(_TRANSIENT, 2),
        ),
        first_attempt_at=NOW - 3599,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_failure_becomes_its_row_of_the_table(row: Row) -> None:
    outcome = failure_outcome(
        row.error,
        attempted=row.attempted,
        attempts_made=row.attempts_made,
        first_attempt_at=row.first_attempt_at,
        now=NOW,
        policy=POLICY,
        defer_seconds=DEFER,
        park_recheck_seconds=RECHECK,
    )
    assert outcome == row.expected


def test_every_error_kind_has_a_row() -> None:
    kinds = {type(row.error) for row in ROWS}
    assert {
        TransientError,
        BackpressureError,
        EndpointGoneError,
        QuotaExhaustedError,
        HeldForReviewError,
        AuthenticationError,
        PermanentError,
    } <= kinds
