"""A worker SIGKILLed five times during a 10,000-event run, with deliveries in flight."""

from __future__ import annotations

from processors.samples import sample_events
from tests.faults.conftest import (
    FaultRun,
    delivered_keys,
    receiver_endpoints,
    wait_for,
    wait_for_count,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.accounting import receiver_receipts

KILLS = 5
LANES = 4


def test_worker_killed_five_times_loses_nothing_and_resends_only_what_was_in_flight(
    shared_run: FaultRun, receiver: ReceiverServer
) -> None:
    tenants = [f"t_k{i:02d}" for i in range(20)]
    shared_run.seed(receiver_endpoints(receiver, tenants))
    receiver.set_default_behaviour(Behaviour(delay_seconds=0.02))  # requests stay in flight
    events = sample_events(tenants, 10_000, seed=71)
    shared_run.publish(events)
    worker = shared_run.start_worker()
    at_kills = []
    for kill in range(1, KILLS + 1):
        target = kill * 1500

        def reached(target: int = target) -> bool:
            return len(delivered_keys(receiver)) >= target

        assert wait_for(reached, within=150), (
            f"before kill {kill}: {len(delivered_keys(receiver))} delivered, wanted {target}"
        )
        pid = worker.pid
        worker.kill()
        at_kills.append(len(delivered_keys(receiver)))
        worker = shared_run.start_worker()
        assert worker.pid != pid
    assert at_kills[-1] < len(events), f"the last kill came after the run ended: {at_kills}"
    wait_for_count(lambda: len(delivered_keys(receiver)), len(events), within=240, stall=40)
    wait_for(lambda: False, within=3)  # anything sent twice would show up now
    result = shared_run.account(events, receiver_receipts(receiver), "worker-kills")
    # Only requests a receiver answered while the worker had not yet recorded them can be
    # sent again after a SIGKILL: at most one per lane task per connection and kill.
    allowed = KILLS * len(tenants) * LANES
    assert not result.violations(allowed_duplicates=allowed), result.message(
        allowed_duplicates=allowed
    )
    # An older version re-read after a kill, once a newer one was delivered, is rightly
    # skipped as stale: every export is delivered or stale-skipped, none dead-lettered.
    settled = result.summary["delivered"] + result.summary["stale_skipped"]
    assert settled == len(events), result.summary
    assert result.summary["dead_lettered"] == 0, result.summary
    assert worker.running, "the last worker is still running"
    print(f"delivered at each kill: {at_kills}; figures: {result.summary}")
