"""The failing-destination breaker: its pure transitions, and the engine acting on them.

Time is an injected clock (``now`` arguments, the engine harness's ``clock``): no sleeps.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from connectors.base import PermanentError, TransientError
from processors.deliveries.breaker import (
    Breaker,
    BreakerPolicy,
    Transition,
    on_failure,
    on_success,
    take_probe,
)
from processors.deliveries.state import ConnectionHealth
from processors.settings import DeliverySettings
from tests.unit.deliveries.test_engine import NOW, Harness, _connection, _headers, _item

POLICY = BreakerPolicy(
    threshold=3,
    window_seconds=600,
    probe_initial_seconds=30,
    probe_max_seconds=100,
    disable_after_seconds=3600,
)


def _fail(breaker: Breaker, now: float, *, probe: bool = False) -> tuple[Breaker, Transition]:
    return on_failure(breaker, now=now, reason="503 from the endpoint", probe=probe, policy=POLICY)


def test_consecutive_failures_trip_at_the_threshold() -> None:
    breaker = Breaker()
    transitions = []
    for n in range(3):
        breaker, transition = _fail(breaker, NOW + n)
        transitions.append(transition)
    assert transitions == [Transition.NONE, Transition.NONE, Transition.FAILING]
    assert breaker.failing
    assert breaker.failing_since == NOW + 2
    assert breaker.first_failure_at == NOW
    assert breaker.next_probe_at == NOW + 2 + 30
    assert breaker.last_error == "503 from the endpoint"


def test_failures_spanning_the_window_trip_below_the_threshold() -> None:
    breaker, _ = _fail(Breaker(), NOW)
    breaker, transition = _fail(breaker, NOW + 600)
    assert transition is Transition.FAILING
    assert breaker.failures == 2


def test_a_success_clears_the_count() -> None:
    breaker, _ = _fail(Breaker(), NOW)
    breaker, _ = _fail(breaker, NOW + 1)
    cleared, transition = on_success(breaker)
    assert (cleared, transition) == (Breaker(), Transition.NONE)
    again, transition = _fail(cleared, NOW + 2)
    assert transition is Transition.NONE
    assert again.failures == 1
    assert again.first_failure_at == NOW + 2


def test_one_probe_per_interval_doubling_to_the_maximum_then_resumed() -> None:
    breaker = Breaker()
    for n in range(3):
        breaker, _ = _fail(breaker, NOW + n)
    now = NOW + 2
    assert take_probe(breaker, now=now + 29) == (breaker, False)
    intervals = []
    for _ in range(4):
        now = breaker.next_probe_at
        breaker, granted = take_probe(breaker, now=now)
        assert granted
        assert take_probe(breaker, now=now)[1] is False, "a second caller waits"
        breaker, transition = _fail(breaker, now + 1, probe=True)
        assert transition is Transition.NONE
        intervals.append(breaker.probe_interval)
    assert intervals == [60, 100, 100, 100]
    resumed, transition = on_success(breaker)
    assert transition is Transition.RESUMED
    assert not resumed.failing


def test_a_batch_failing_after_the_trip_keeps_the_probe_schedule() -> None:
    breaker = Breaker()
    for n in range(3):
        breaker, _ = _fail(breaker, NOW + n)
    later, transition = _fail(breaker, NOW + 5, probe=False)
    assert transition is Transition.NONE
    assert later.next_probe_at == breaker.next_probe_at
    assert later.failures == 4


def test_failing_past_the_disable_window_disables() -> None:
    breaker = Breaker()
    for n in range(3):
        breaker, _ = _fail(breaker, NOW + n)
    _after, transition = _fail(breaker, NOW + 3600, probe=True)
    assert transition is Transition.DISABLED


def test_a_closed_breaker_grants_no_probe_and_a_run_before_a_save_is_over() -> None:
    assert take_probe(Breaker(), now=NOW) == (Breaker(), False)
    breaker, _ = _fail(Breaker(), NOW)
    assert breaker.older_than(NOW + 1)
    assert not breaker.older_than(NOW)
    assert Breaker.from_fields(breaker.to_fields()) == breaker
    assert Breaker.from_fields({"failures": "x"}) == Breaker()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("breaker_threshold", "0"),
        ("breaker_threshold", "many"),
        ("breaker_window_seconds", "0"),
        ("breaker_probe_initial_seconds", "-1"),
        ("breaker_probe_max_seconds", "nan"),
        ("breaker_disable_after_seconds", "0"),
    ],
)
def test_bad_breaker_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(f"QI_DELIVERY_{field.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        DeliverySettings()
    assert caught.value.errors()[0]["loc"] == (field,)


def test_the_policy_comes_from_the_settings() -> None:
    settings = DeliverySettings(breaker_threshold=7, breaker_probe_initial_seconds=5)
    policy = BreakerPolicy.from_settings(settings)
    assert (policy.threshold, policy.probe_initial_seconds) == (7, 5)
    assert policy.window_seconds == 15 * 60
    assert policy.disable_after_seconds == 3 * 86400


def test_every_policy_field_is_a_breaker_setting_with_the_same_default() -> None:
    settings = DeliverySettings(
        breaker_threshold=2,
        breaker_window_seconds=61,
        breaker_probe_initial_seconds=3,
        breaker_probe_max_seconds=62,
        breaker_disable_after_seconds=63,
    )
    assert BreakerPolicy.from_settings(settings) == BreakerPolicy(2, 61, 3, 62, 63)
    defaults = DeliverySettings.model_fields
    policy = BreakerPolicy()
    for name in BreakerPolicy.__dataclass_fields__:
        assert getattr(policy, name) == defaults[f"breaker_{name}"].default, name


# -- the engine ------------------------------------------------------------------------------


def _unavailable(_record: object) -> TransientError:
    return TransientError("503 from the endpoint", status_code=503)


async def _trip(h: Harness, count: int = 20) -> None:
    """Fail ``count`` records one by one (the default threshold is 20)."""
    for n in range(1, count + 1):
        await h.run_more([_item(n)])
        h.clock += 1


async def test_the_engine_trips_after_the_threshold_and_holds_records_without_attempts() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    breaker = h.state.breakers["conn_1"]
    assert breaker.failing
    assert h.sent() == 20
    h.clock += 1  # before the first probe is due
    acked = await h.run_more([_item(100), _item(101)])
    assert sorted(acked) == ["d-100", "d-101"]
    assert h.sent() == 20, "nothing is sent while the destination is failing"
    await h.engine.flush_index()
    waiting = [r for r in h.records.added if r.status.value == "waiting"]
    assert [r.delivery_id for r in waiting] == ["d-100", "d-101"]
    assert all(r.attempt == 0 for r in waiting), "no attempt spent"
    assert waiting[0].last_error is not None
    assert waiting[0].last_error.error_class == "ConnectionFailing"
    retried = [_headers(r) for r in h.on("retry.webhook")][-2:]
    assert [r["qi.retry.kind"] for r in retried] == ["waiting", "waiting"]
    assert [r["qi.attempt"] for r in retried] == ["0", "0"]
    assert h.on("dlq.webhook") == []
    await h.engine.close()


async def test_one_probe_is_sent_when_due_and_its_success_resumes_the_destination() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    h.clock = h.state.breakers["conn_1"].next_probe_at
    h.script = lambda r: None
    h.engine._lanes["conn_1"].connection_loaded_at = float("-inf")
    await h.run_more([_item(200)])
    assert h.sent() == 21, "the probe"
    assert "conn_1" not in h.state.breakers, "resumed: the breaker is cleared"
    assert not h.engine._lanes["conn_1"].breaker.failing
    await h.run_more([_item(201), _item(202)])
    assert h.sent() == 23, "records flow again"
    await h.engine.flush_index()
    assert h.statuses()[-3:] == ["delivered", "delivered", "delivered"]
    await h.engine.close()


async def test_a_failed_probe_doubles_the_interval_and_the_rest_keep_waiting() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    first = h.state.breakers["conn_1"]
    h.clock = first.next_probe_at
    await h.run_more([_item(300)])
    assert h.sent() == 21
    after = h.state.breakers["conn_1"]
    assert after.failing
    assert after.probe_interval == 2 * first.probe_interval
    assert after.next_probe_at == h.clock + after.probe_interval
    await h.run_more([_item(301)])
    assert h.sent() == 21, "no second probe before the next interval"
    await h.engine.flush_index()
    assert h.statuses()[-2:] == ["retry_scheduled", "waiting"]
    await h.engine.close()


async def test_permanent_refusals_neither_trip_nor_clear() -> None:
    h = Harness(lambda r: PermanentError("400", status_code=400))
    await _trip(h, 25)
    assert "conn_1" not in h.state.breakers
    await h.engine.close()


async def test_a_destination_failing_past_the_disable_window_is_disabled_and_parks() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    h.clock = NOW + 3 * 86400 + 1
    h.engine._lanes["conn_1"].connection_loaded_at = float("-inf")
    await h.run_more([_item(400)])  # the due probe fails: disabled
    health = h.state.health["conn_1"]
    assert health.health is ConnectionHealth.DISABLED
    assert "503 from the endpoint" in health.reason
    assert "conn_1" not in h.state.breakers
    sent = h.sent()
    await h.run_more([_item(401)])
    assert h.sent() == sent
    await h.engine.flush_index()
    assert h.statuses()[-1] == "parked"
    await h.engine.close()
    # an admin saves the connection: it is newer than the disabling, records flow again
    saved = _connection(updated_at=datetime.fromtimestamp(h.clock + 10, UTC))
    h2 = Harness(lambda r: None, connection=saved, state=h.state)
    h2.clock = h.clock + 20
    await h2.run([_item(402)])
    assert h2.statuses() == ["delivered"]


async def test_a_breaker_older_than_the_connection_save_is_ignored() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    assert h.state.breakers["conn_1"].failing
    saved = _connection(updated_at=datetime.fromtimestamp(h.clock + 10, UTC))
    h2 = Harness(lambda r: None, connection=saved, state=h.state)
    h2.clock = h.clock + 20
    await h2.run([_item(500)])
    assert h2.statuses() == ["delivered"]
    assert h2.sinks[0].sent[0].delivery_id == "d-500"
    records = [json.loads(r.value) for r in h2.on("delivery-records")]
    assert records[0]["status"] == "delivered"


async def test_a_restarted_worker_finds_the_destination_failing() -> None:
    h = Harness(_unavailable)
    await _trip(h)
    await h.engine.close()
    restarted = Harness(lambda r: None, state=h.state)
    restarted.clock = h.clock
    await restarted.run([_item(600)])
    assert restarted.sent() == 0, "the state is shared, not the worker's own"
    assert restarted.statuses() == ["waiting"]
