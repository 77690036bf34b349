from __future__ import annotations

import pytest

from connectors.base import (
    BackpressureError,
    RateLimit,
    RatePolicy,
    RollingWindow,
    TokenBucket,
    take_or_defer,
)
from tests.unit.connectors.fakes import FakeClock


def _bucket(
    clock: FakeClock, *, rate: float = 10, per_seconds: float = 1, burst: float | None = None
) -> TokenBucket:
    return TokenBucket(rate, per_seconds, burst=burst, clock=clock.monotonic)


def test_a_fresh_bucket_grants_its_burst_then_returns_a_wait() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10, burst=3)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.1)


def test_wait_covers_the_missing_tokens_and_consumes_nothing() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=110, per_seconds=10)  # HubSpot public app: 110 / 10 s
    assert bucket.try_acquire(110) == 0.0
    assert bucket.try_acquire(11) == pytest.approx(1.0)
    assert bucket.try_acquire(11) == pytest.approx(1.0)  # still nothing taken
    clock.advance(0.5)
    assert bucket.try_acquire(11) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.try_acquire(11) == 0.0
    assert bucket.available == pytest.approx(0.0)


def test_refill_stops_at_capacity() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10, burst=5)
    assert bucket.try_acquire(5) == 0.0
    clock.advance(60)
    assert bucket.available == 5
    assert bucket.try_acquire(5) == 0.0
    assert bucket.try_acquire() > 0


@pytest.mark.parametrize("n", [0, -1, 6])
def test_impossible_requests_are_refused(n: float) -> None:
    bucket = _bucket(FakeClock(), burst=5)
    with pytest.raises(ValueError, match=r"n must be positive|capacity"):
        bucket.try_acquire(n)


@pytest.mark.parametrize(
    ("rate", "per_seconds", "burst"), [(0, 1, None), (1, 0, None), (1, 1, -2), (float("inf"), 1, 1)]
)
def test_invalid_limits_are_refused(rate: float, per_seconds: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        RateLimit(rate=rate, per_seconds=per_seconds, burst=burst)


def test_remaining_zero_drains_and_reset_blocks_until_the_window_ends() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10)
    bucket.observe_headers(limit=10, remaining=0, reset_seconds=5)
    assert bucket.available == 0
    assert bucket.try_acquire() == pytest.approx(5.1)
    clock.advance(5)
    assert bucket.try_acquire() == pytest.approx(0.1)  # refills from empty after the reset
    clock.advance(0.1)
    assert bucket.try_acquire() == 0.0


def test_remaining_zero_without_reset_only_drains() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10)
    bucket.observe_headers(remaining=0)
    assert bucket.try_acquire() == pytest.approx(0.1)


def test_remaining_lowers_tokens_but_never_adds_any() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10)
    bucket.observe_headers(remaining=2)
    assert bucket.available == 2
    bucket.observe_headers(remaining=9)
    assert bucket.available == 2


def test_a_lower_partner_limit_lowers_rate_and_capacity() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=190, per_seconds=10)
    bucket.observe_headers(limit=100)
    assert bucket.capacity == 100
    assert bucket.refill_per_second == pytest.approx(10)
    bucket.observe_headers(limit=250)  # higher than configured: ignored
    assert bucket.capacity == 100


def test_rate_limit_builds_a_full_bucket() -> None:
    clock = FakeClock()
    bucket = RateLimit(rate=2, per_seconds=1, burst=4).bucket(clock=clock.monotonic)
    assert bucket.available == 4
    assert bucket.refill_per_second == 2


async def test_acquire_or_wait_sleeps_for_a_short_wait() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10, burst=1)
    await bucket.acquire_or_wait(max_wait=1, sleep=clock.sleep)
    await bucket.acquire_or_wait(max_wait=1, sleep=clock.sleep)
    assert clock.slept == [pytest.approx(0.1)]


async def test_acquire_or_wait_defers_a_long_wait_without_sleeping() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=1, per_seconds=10, burst=1)
    await bucket.acquire_or_wait(max_wait=1, sleep=clock.sleep)
    with pytest.raises(BackpressureError) as caught:
        await bucket.acquire_or_wait(max_wait=1, partner="webhook", sleep=clock.sleep)
    assert caught.value.retry_after == pytest.approx(10)
    assert caught.value.partner == "webhook"
    assert clock.slept == []


async def test_acquire_or_wait_rechecks_after_sleeping() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, rate=10, burst=1)
    bucket.try_acquire()

    async def sleep_while_another_task_takes_the_token(seconds: float) -> None:
        await clock.sleep(seconds)
        assert bucket.try_acquire() == 0.0

    with pytest.raises(BackpressureError):
        await bucket.acquire_or_wait(max_wait=0.15, sleep=sleep_while_another_task_takes_the_token)
    assert clock.slept == [pytest.approx(0.1)]


# -- the rolling window policy and the one wait-or-defer loop -------------------------------


def _window(clock: FakeClock, *, limit: int = 3, interval: float = 10.0) -> RollingWindow:
    return RollingWindow(limit, interval, clock=clock.monotonic)


@pytest.mark.parametrize(
    ("sent_at", "now", "expected"),
    [
        ([], 0.0, 0.0),  # empty window: go
        ([0.0, 1.0], 2.0, 0.0),  # room for one more
        ([0.0, 1.0, 2.0], 3.0, 7.0),  # full: wait until the oldest leaves
        ([0.0, 1.0, 2.0], 10.0, 0.0),  # the oldest left at 10 s
        ([0.0, 1.0, 2.0], 10.5, 0.0),
        ([5.0, 5.0, 5.0], 6.0, 9.0),
    ],
)
def test_rolling_window_waits_until_a_request_leaves(
    sent_at: list[float], now: float, expected: float
) -> None:
    clock = FakeClock(monotonic=now)
    window = _window(clock)
    for at in sent_at:
        window.record(at)
    assert window.wait() == pytest.approx(expected)
    assert window.try_acquire() == pytest.approx(expected)
    if expected:  # a refusal counts nothing
        assert window.wait() == pytest.approx(expected)
    else:  # an admission counts one request
        assert window.wait() > 0.0 or len(sent_at) + 1 < 3


def test_rolling_window_never_sends_more_than_its_limit_in_any_interval() -> None:
    clock = FakeClock()
    window = _window(clock, limit=3, interval=10.0)
    admitted: list[float] = []
    for _ in range(20):
        wait = window.try_acquire()
        if wait == 0.0:
            admitted.append(clock.monotonic())
        else:
            clock.advance(wait)
    assert len(admitted) > 3
    for index in range(len(admitted) - 3):
        assert admitted[index + 3] - admitted[index] >= 10.0


def test_rolling_window_counts_a_request_from_its_answer() -> None:
    clock = FakeClock()
    window = _window(clock, limit=1, interval=10.0)
    assert window.try_acquire(now=0.0) == 0.0
    window.settle(0.0, now=4.0)  # answered 4 s later
    assert window.wait(now=10.0) == pytest.approx(4.0)
    assert window.wait(now=14.0) == 0.0


def test_rolling_window_margin_and_lower() -> None:
    clock = FakeClock()
    window = RollingWindow(2, 10.0, margin=0.5, clock=clock.monotonic)
    assert window.try_acquire(2) == 0.0
    assert window.try_acquire() == pytest.approx(10.5)
    window.lower(1, 10.0)
    assert window.limit == 1
    window.lower(5, 10.0)  # a looser limit is ignored
    assert window.limit == 1
    with pytest.raises(ValueError, match="cannot admit"):
        window.try_acquire(2)


def test_both_policies_answer_the_rate_policy_protocol() -> None:
    clock = FakeClock()
    policies: list[RatePolicy] = [_bucket(clock, rate=1, burst=1), _window(clock, limit=1)]
    for policy in policies:
        assert policy.try_acquire() == 0.0
        assert policy.try_acquire() > 0.0


@pytest.mark.parametrize(
    ("waits", "max_wait", "slept", "deferred_after"),
    [
        ([0.0], 1.0, [], None),
        ([0.3, 0.0], 1.0, [0.3], None),
        ([0.3, 0.5, 0.0], 1.0, [0.3, 0.5], None),
        ([0.3, 0.8], 1.0, [0.3], 0.8),  # 0.3 + 0.8 > 1: defer with the wait left
        ([2.0], 1.0, [], 2.0),  # too long at once: nothing slept
        ([1e-9, 0.0], 1.0, [0.001], None),  # the minimum sleep
    ],
)
async def test_take_or_defer_sleeps_short_waits_and_defers_long_ones(
    waits: list[float], max_wait: float, slept: list[float], deferred_after: float | None
) -> None:
    clock = FakeClock()
    answers = iter(waits)

    def deferred(wait: float) -> BackpressureError:
        return BackpressureError("too long", retry_after=wait)

    async def run() -> None:
        await take_or_defer(
            lambda: next(answers),
            max_wait=max_wait,
            sleep=clock.sleep,
            deferred=deferred,
            min_sleep=0.001,
        )

    if deferred_after is None:
        await run()
    else:
        with pytest.raises(BackpressureError) as caught:
            await run()
        assert caught.value.retry_after == pytest.approx(deferred_after)
    assert clock.slept == [pytest.approx(s) for s in slept]
