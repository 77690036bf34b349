from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from processors.deliveries.envelope import (
    REQUIRED_HEADERS,
    EnvelopeError,
    item_from_record,
    retry_headers,
)
from processors.deliveries.models import AttemptError
from processors.deliveries.policy import RetryPolicy


def _policy(rng: float = 1.0, **overrides: float) -> RetryPolicy:
    values = {
        "max_attempts": 5,
        "timeout_seconds": 3600.0,
        "base_delay_seconds": 2.0,
        "max_delay_seconds": 60.0,
        **overrides,
    }
    return RetryPolicy(
        max_attempts=int(values["max_attempts"]),
        timeout_seconds=values["timeout_seconds"],
        base_delay_seconds=values["base_delay_seconds"],
        max_delay_seconds=values["max_delay_seconds"],
        rng=lambda: rng,
    )


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    top = _policy(rng=1.0)
    assert [top.delay(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    bottom = _policy(rng=0.0)
    assert bottom.delay(4) == 0.0
    half = _policy(rng=0.5)
    assert half.delay(3) == 4.0


def test_retry_after_is_never_undercut() -> None:
    assert _policy(rng=0.0).delay(1, retry_after=7.5) == 7.5
    assert _policy(rng=1.0).delay(5, retry_after=7.5) == 32.0


def test_budget_of_attempts_and_of_age() -> None:
    policy = _policy(rng=1.0)
    assert policy.decide(attempts_made=4, first_attempt_at=0, now=10).retry
    spent = policy.decide(attempts_made=5, first_attempt_at=0, now=10)
    assert not spent.retry
    assert "5 attempts" in spent.reason
    old = policy.decide(attempts_made=1, first_attempt_at=0, now=3599)
    assert not old.retry
    assert "older than" in old.reason


def _headers(**overrides: str) -> dict[str, str]:
    headers = {name: f"v-{name}" for name in REQUIRED_HEADERS}
    headers["qi.entity_version"] = "3"
    headers.update(overrides)
    return headers


def test_item_from_an_export_record() -> None:
    item = item_from_record(value=b"x", headers=_headers(), topic="t", partition=2, offset=9)
    assert item.attempts_made == 0
    assert item.hop == 0
    assert item.first_attempt_at_ms is None
    assert item.entity_version == 3
    assert item.source == "t:2:9"


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"", _headers(), "no value"),
        (b"x", {k: v for k, v in _headers().items() if k != "qi.tenant_id"}, "qi.tenant_id"),
        (b"x", _headers(**{"qi.entity_version": "three"}), "not an integer"),
        (b"x", _headers(**{"qi.attempt": "x"}), "not an integer"),
        (b"x", _headers(**{"qi.errors": "{not a list"}), "error history"),
        (b"x", _headers(**{"qi.replay_id": "r", "qi.run.kind": "rerun"}), "no known run"),
    ],
)
def test_unusable_envelopes(value: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        item_from_record(value=value, headers=headers, topic="t", partition=0, offset=0)


@pytest.mark.parametrize(
    ("extra", "kind", "skips"),
    [
        ({}, None, True),
        ({"qi.replay_id": "r1"}, "replay", False),
        ({"qi.replay_id": "r1", "qi.run.kind": "replay"}, "replay", False),
        ({"qi.replay_id": "r1", "qi.run.kind": "redrive"}, "redrive", True),
        ({"qi.replay_id": "r1", "qi.run.kind": "release"}, "release", True),
        ({"qi.replay_id": "r1", "qi.run.kind": "backfill"}, "backfill", True),
    ],
)
def test_only_a_replay_sends_a_delivered_key_again(
    extra: dict[str, str], kind: str | None, skips: bool
) -> None:
    item = item_from_record(value=b"x", headers=_headers(**extra), topic="t", partition=0, offset=0)
    assert item.run_kind == kind
    assert item.skips_delivered is skips


def test_retry_headers_round_trip_and_advance_the_hop() -> None:
    item = item_from_record(value=b"x", headers=_headers(), topic="t", partition=0, offset=0)
    item.errors.append(
        AttemptError(
            attempt=1,
            at=datetime(2026, 1, 1, tzinfo=UTC),
            error_class="TransientError",
            reason="503",
            status_code=503,
        )
    )
    headers = {
        k: v.decode()
        for k, v in retry_headers(
            item, kind="retry", attempts_made=1, not_before_ms=5000, now_ms=1000
        )
    }
    again = item_from_record(value=b"x", headers=headers, topic="r", partition=0, offset=1)
    assert again.attempts_made == 1
    assert again.hop == 1
    assert again.not_before_ms == 5000
    assert again.first_attempt_at_ms == 1000
    assert again.errors == item.errors
    assert json.loads(headers["qi.errors"])[0]["status_code"] == 503
    assert headers["qi.retry.kind"] == "retry"
    # the next hop keeps the first attempt time and replaces, not duplicates, the bookkeeping
    pairs = retry_headers(again, kind="deferred", attempts_made=1, not_before_ms=9000, now_ms=8000)
    third = {k: v.decode() for k, v in pairs}
    assert third["qi.first_attempt_at"] == "1000"
    assert third["qi.hop"] == "2"
    assert [k for k, _ in pairs].count("qi.hop") == 1


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (float("inf"), 3600.0),
        (1e308, 3600.0),
        (float("nan"), 2.0),
        (-5.0, 2.0),
    ],
)
def test_a_wait_hint_is_bounded_by_the_age_budget(retry_after: float, expected: float) -> None:
    assert _policy(rng=1.0).delay(1, retry_after=retry_after) == expected


def test_a_huge_attempt_count_is_the_capped_delay_not_an_overflow() -> None:
    assert _policy(rng=1.0).delay(10**6) == 60.0
    decision = _policy(rng=1.0).decide(
        attempts_made=1, first_attempt_at=0, now=0, retry_after=float("inf")
    )
    assert decision.retry
    assert decision.delay_seconds == 3600.0
