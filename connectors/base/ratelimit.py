"""Token buckets that say how long to wait instead of sleeping in the hot path.

One bucket per rate-limit scope (the tenant's partner account), sized from the partner's
documented limits (:class:`RateLimit`) and corrected by the partner's rate-limit headers
(:meth:`TokenBucket.observe_headers`). The caller decides what a wait means: wait briefly
(:meth:`TokenBucket.acquire_or_wait`) or defer the record with a ``BackpressureError``.

A bucket is not thread-safe; it is meant for one asyncio event loop, where
:meth:`TokenBucket.try_acquire` runs without yielding and is therefore atomic.

Why not ``aiolimiter.AsyncLimiter`` for this: it only waits (``acquire``) or answers yes/no
(``has_capacity``); it cannot say *how long* until capacity returns, which the delivery
engine needs to choose between a short wait and a deferral, it reads the event loop's clock
(no injected clock for tests), and it cannot be corrected by a partner's rate-limit headers.
Plain pacing that only ever waits (a partner's search endpoint) can use ``AsyncLimiter``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from connectors.base.errors import BackpressureError

__all__ = ["RateLimit", "TokenBucket"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """A documented limit: ``rate`` requests per ``per_seconds``, bursting to ``burst``."""

    rate: float
    per_seconds: float
    burst: float | None = None

    def __post_init__(self) -> None:
        _check_limit(self.rate, self.per_seconds, self.burst)

    def bucket(self, *, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
        """A fresh, full bucket for one rate-limit scope."""
        return TokenBucket(self.rate, self.per_seconds, burst=self.burst, clock=clock)


def _check_limit(rate: float, per_seconds: float, burst: float | None) -> None:
    for name, value in (("rate", rate), ("per_seconds", per_seconds), ("burst", burst)):
        if value is not None and not (math.isfinite(value) and value > 0):
            msg = f"{name} must be a positive finite number"
            raise ValueError(msg)


class TokenBucket:
    """``rate`` tokens per ``per_seconds``, holding at most ``burst``.

    ``burst`` defaults to ``rate``, but at least one token, so a limit below one request
    per window still grants single requests.

    The bucket starts full. ``clock`` is a monotonic clock in seconds (injected in tests).
    """

    def __init__(
        self,
        rate: float,
        per_seconds: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limit(rate, per_seconds, burst)
        self._clock = clock
        self._per_seconds = float(per_seconds)
        self._configured_rate = float(rate)
        self._configured_capacity = float(burst) if burst is not None else max(float(rate), 1.0)
        self._refill_per_second = rate / per_seconds
        self._capacity = self._configured_capacity
        self._tokens = self._capacity
        # Refill accrues from ``_refill_from``; a value in the future blocks refill until then.
        self._refill_from = clock()

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (lowered by a partner ``limit`` header)."""
        return self._capacity

    @property
    def refill_per_second(self) -> float:
        """Tokens added per second."""
        return self._refill_per_second

    @property
    def available(self) -> float:
        """Tokens available now (after refill)."""
        self._refill(self._clock())
        return self._tokens

    def _refill(self, now: float) -> None:
        if now > self._refill_from:
            gained = (now - self._refill_from) * self._refill_per_second
            self._tokens = min(self._capacity, self._tokens + gained)
            self._refill_from = now

    def try_acquire(self, n: float = 1) -> float:
        """Take ``n`` tokens and return ``0.0``, or return the seconds until ``n`` would be
        available without taking any.

        Raises ``ValueError`` if ``n`` is not positive or exceeds the capacity (it could
        never be granted).
        """
        if not (n > 0):
            msg = "n must be positive"
            raise ValueError(msg)
        if n > self._capacity:
            msg = f"cannot acquire {n} tokens from a bucket of capacity {self._capacity}"
            raise ValueError(msg)
        now = self._clock()
        self._refill(now)
        blocked_for = max(0.0, self._refill_from - now)
        if blocked_for == 0.0 and self._tokens >= n:
            self._tokens -= n
            return 0.0
        # While blocked (the partner said to hold off until its reset), nothing refills.
        missing = max(0.0, n - self._tokens)
        return blocked_for + missing / self._refill_per_second

    async def acquire_or_wait(
        self,
        n: float = 1,
        *,
        max_wait: float,
        partner: str | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """Take ``n`` tokens, sleeping while the total wait stays within ``max_wait`` seconds.

        Raises ``BackpressureError(retry_after=wait)`` without sleeping when the tokens are
        further away than the remaining budget: defer the records instead of blocking.
        Re-checks after each sleep, since other tasks may have taken the tokens.
        """
        started = self._clock()
        while True:
            wait = self.try_acquire(n)
            if wait == 0.0:
                return
            budget = max_wait - (self._clock() - started)
            if wait > budget:
                raise BackpressureError(
                    "rate limit wait too long", retry_after=wait, partner=partner
                )
            await sleep(wait)

    def observe_headers(
        self,
        *,
        limit: float | None = None,
        remaining: float | None = None,
        reset_seconds: float | None = None,
    ) -> None:
        """Correct the bucket from a partner response's rate-limit headers.

        - ``limit``: the partner's quota per ``per_seconds``. A lower one than configured
          lowers the rate and capacity; a higher one is ignored (raise the configured rate
          through the connection's rate-limit override instead).
        - ``remaining``: the bucket never holds more than the partner says is left (other
          clients of the same account spend the quota too); headers never add tokens.
        - ``remaining == 0``: drain, and with ``reset_seconds`` grant nothing until the
          window resets, then refill from empty.

        Also call it after a 429 with ``remaining=0, reset_seconds=retry_after``.
        """
        now = self._clock()
        self._refill(now)
        if limit is not None and 0 < limit < self._configured_rate:
            self._refill_per_second = limit / self._per_seconds
            self._capacity = min(self._configured_capacity, float(limit))
            self._tokens = min(self._tokens, self._capacity)
        if remaining is not None:
            self._tokens = max(0.0, min(self._tokens, float(remaining)))
            if remaining <= 0 and reset_seconds is not None and reset_seconds > 0:
                self._refill_from = max(self._refill_from, now + reset_seconds)
