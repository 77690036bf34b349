"""Two workers in one group, a third joining and one leaving mid-run."""

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


def test_workers_joining_and_leaving_write_each_export_once_and_never_an_older_version(
    shared_run: FaultRun, receiver: ReceiverServer
) -> None:
    tenants = [f"t_g{i:02d}" for i in range(12)]
    shared_run.seed(receiver_endpoints(receiver, tenants))
    receiver.set_default_behaviour(Behaviour(delay_seconds=0.02))
    # Three tenants' endpoints throttle, so their records wait in lanes and on the retry topic
    # (the state an old owner still holds when its partitions move).
    for tenant in tenants[:3]:
        receiver.set_behaviour(tenant, Behaviour(rate_limit_per_second=25, retry_after=0.5))
    first = sample_events(tenants, 2000, seed=91)
    newer = sample_events(tenants, 2000, seed=92, version_offset=1000)  # same entities
    shared_run.publish(first)
    leaving = shared_run.start_worker()
    staying = shared_run.start_worker()
    assert wait_for(lambda: len(delivered_keys(receiver)) >= 700, within=150)
    joining = shared_run.start_worker()
    shared_run.publish(newer)
    events = first + newer
    assert wait_for(lambda: len(delivered_keys(receiver)) >= 2400, within=150)
    at_leave = len(delivered_keys(receiver))
    leaving.stop()
    for tenant in tenants[:3]:  # the throttled endpoints recover once the group has settled
        receiver.set_behaviour(tenant, None)
    wait_for_count(lambda: len(delivered_keys(receiver)), len(events), within=180, stall=40)
    wait_for(lambda: False, within=3)
    result = shared_run.account(events, receiver_receipts(receiver), "group-changes")
    print(f"one worker left at {at_leave} deliveries; figures: {result.summary}")
    assert at_leave < len(events), "the worker left mid-run"
    assert not result.violations(), result.message()
    assert staying.running
    assert joining.running
