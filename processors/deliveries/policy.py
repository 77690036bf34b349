"""The retry policy: exponential backoff with full jitter inside a budget of attempts and age.

``delay(attempt)`` draws uniformly from ``[0, min(max_delay, base * 2 ** (attempt - 1))]``
(full jitter) and never undercuts the partner's ``Retry-After`` or reset time. That hint is
bounded first (NaN or negative: no hint; infinite: as long as the age budget), so no
partner's number can make a delay infinite or raise. A delivery
whose next attempt would exceed ``max_attempts`` or start later than ``timeout`` after its
first attempt is exhausted and dead-lettered with its error history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.base import bounded_wait

__all__ = ["RetryDecision", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry`` with the delay before the next attempt, or not (the budget is spent)."""

    retry: bool
    delay_seconds: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    timeout_seconds: float
    base_delay_seconds: float
    max_delay_seconds: float
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)  # 2 ** 64 base delays is past any cap
        cap = min(self.max_delay_seconds, self.base_delay_seconds * 2.0**exponent)
        jittered = float(self.rng()) * cap
        hint = bounded_wait(retry_after, maximum=self.timeout_seconds)
        return max(jittered, hint) if hint is not None else jittered

    def decide(
        self,
        *,
        attempts_made: int,
        first_attempt_at: float,
        now: float,
        retry_after: float | None = None,
    ) -> RetryDecision:
        """After ``attempts_made`` failed attempts: retry (and when), or dead-letter."""
        if attempts_made >= self.max_attempts:
            return RetryDecision(False, 0.0, f"retry budget spent: {attempts_made} attempts")
        delay = self.delay(attempts_made, retry_after=retry_after)
        if now + delay - first_attempt_at > self.timeout_seconds:
            return RetryDecision(
                False, 0.0, f"retry budget spent: older than {self.timeout_seconds:.0f}s"
            )
        return RetryDecision(True, delay)
