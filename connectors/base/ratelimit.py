"""Rate-limit policies that say how long to wait, and the one loop that waits or defers.

Every policy answers the same question, "may a request go now?", with a number: ``0.0``
(it was admitted and counted) or the seconds to wait before it may go (nothing counted).
A policy never sleeps; the caller decides what a wait means: sleep while the total wait
stays short, or defer the records with a ``BackpressureError`` (see
:func:`take_or_defer`, the one loop every connector uses for that decision).

Two policies, both on an injected monotonic clock (seconds; a fake one in tests):

- :class:`TokenBucket`: ``rate`` tokens per ``per_seconds``, bursting to ``burst``; sized
  from the partner's documented limits (:class:`RateLimit`) and corrected by its
  rate-limit headers (:meth:`TokenBucket.observe_headers`). Spaces requests evenly.
- :class:`RollingWindow`: at most ``limit`` requests in any ``interval`` seconds, counting
  each request from when it was admitted until its answer is back (HubSpot counts its
  burst limit this way: a bucket alone would send up to twice the limit in a window).

A connector may combine both (HubSpot's pacer admits a request only when its window and its
bucket both say ``0.0``). The :class:`RatePolicy` protocol is what they share.

Policies are not thread-safe: they are meant for one asyncio event loop, where
``try_acquire`` runs without yielding and is therefore atomic.

Why not ``aiolimiter.AsyncLimiter`` for this: it only waits (``acquire``) or answers yes/no
(``has_capacity``); it cannot say *how long* until capacity returns, which the delivery
engine needs to choose between a short wait and a deferral, it reads the event loop's clock
(no injected clock for tests), and it cannot be corrected by a partner's rate-limit headers.
Plain pacing that only ever waits (a partner's search endpoint) can use ``AsyncLimiter``.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from connectors.base.errors import BackpressureError

__all__ = ["RateLimit", "RatePolicy", "RollingWindow", "TokenBucket", "take_or_defer"]


class RatePolicy(Protocol):
    """A rate limit that answers with a wait instead of sleeping."""

    def try_acquire(self, n: float = 1) -> float:
        """Admit ``n`` requests (tokens) and return ``0.0``, or return the seconds until
        they would be admitted, counting nothing."""
        ...


async def take_or_defer(
    take: Callable[[], float],
    *,
    max_wait: float,
    sleep: Callable[[float], Awaitable[object]],
    deferred: Callable[[float], BaseException],
    min_sleep: float = 0.0,
) -> None:
    """Call ``take`` (a policy's ``try_acquire``, or several combined) until it admits.

    A wait is slept (at least ``min_sleep``, so float rounding cannot make the loop spin)
    while the waits slept so far plus this one stay within ``max_wait`` seconds; a longer
    one raises ``deferred(wait)`` without sleeping. ``take`` is called again after every
    sleep, since other tasks may have taken the capacity meanwhile.
    """
    waited = 0.0
    while True:
        wait = take()
        if wait == 0.0:
            return
        if waited + wait > max_wait:
            raise deferred(wait)
        pause = max(wait, min_sleep)
        await sleep(pause)
        waited += pause


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
        A shorthand for :func:`take_or_defer` over this bucket.
        """

        def too_long(wait: float) -> BackpressureError:
            return BackpressureError("rate limit wait too long", retry_after=wait, partner=partner)

        await take_or_defer(
            lambda: self.try_acquire(n), max_wait=max_wait, sleep=sleep, deferred=too_long
        )

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


class RollingWindow:
    """At most ``limit`` requests in any ``interval`` seconds.

    A request holds its place from when it was admitted until its answer is back
    (:meth:`settle`), and for ``interval`` (plus ``margin``) after that: the partner stamps
    it somewhere in between, and a request that left late (a busy event loop) must not free
    its place early and earn a 429 for the one that takes it.

    Methods take ``now`` (monotonic seconds, default the clock's) so that a caller that
    admits a request at one instant can settle exactly that admission later.
    """

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        margin: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, limit)
        self.interval = interval
        self._margin = margin
        self._clock = clock
        self._sent: list[float] = []  # admission (or answer) times, sorted

    def _purge(self, now: float) -> None:
        horizon = now - self.interval - self._margin
        expired = bisect.bisect_right(self._sent, horizon)
        if expired:
            del self._sent[:expired]

    def wait(self, now: float | None = None) -> float:
        """Seconds until one more request fits (0.0: now); admits nothing."""
        now = self._clock() if now is None else now
        self._purge(now)
        if len(self._sent) < self.limit:
            return 0.0
        index = len(self._sent) - self.limit
        return max(0.0, self._sent[index] + self.interval + self._margin - now)

    def try_acquire(self, n: float = 1, *, now: float | None = None) -> float:
        """Admit ``n`` requests at ``now`` and return ``0.0``, or return the wait."""
        now = self._clock() if now is None else now
        count = math.ceil(n)
        self._purge(now)
        if len(self._sent) + count <= self.limit:
            for _ in range(count):
                self.record(now)
            return 0.0
        if count > self.limit:
            msg = f"cannot admit {n} requests into a window of {self.limit}"
            raise ValueError(msg)
        index = len(self._sent) + count - 1 - self.limit
        return max(0.0, self._sent[index] + self.interval + self._margin - now)

    def until_oldest_expires(self, now: float | None = None) -> float:
        """Seconds until the oldest request leaves the window; the whole interval if none."""
        now = self._clock() if now is None else now
        self._purge(now)
        if not self._sent:
            return self.interval
        return max(0.0, self._sent[0] + self.interval + self._margin - now)

    def record(self, now: float | None = None) -> None:
        """Count a request admitted at ``now`` (without asking: see :meth:`try_acquire`)."""
        bisect.insort(self._sent, self._clock() if now is None else now)

    def settle(self, taken_at: float, now: float | None = None) -> None:
        """The request admitted at ``taken_at`` is answered: it counts from ``now``."""
        now = self._clock() if now is None else now
        index = bisect.bisect_left(self._sent, taken_at)
        if index < len(self._sent) and self._sent[index] == taken_at:
            del self._sent[index]
        bisect.insort(self._sent, max(taken_at, now))

    def lower(self, limit: int, interval: float) -> None:
        """Adopt a partner's reported limit when it is stricter (a lower rate) than ours."""
        if limit <= 0 or interval <= 0:
            return
        if limit / interval < self.limit / self.interval or (
            interval == self.interval and limit < self.limit
        ):
            self.limit, self.interval = limit, interval
