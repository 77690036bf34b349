"""Hostile endpoints of three tenants: ``Retry-After: 1e308``, ``Retry-After: 1e9`` and a
response dripped one byte a second. Every other tenant's deliveries must all arrive."""

from __future__ import annotations

from processors.samples import sample_events
from tests.faults.conftest import (
    FaultRun,
    delivered_keys,
    receiver_endpoints,
    wait_for,
    wait_for_count,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer, generate_secret
from tests.support.accounting import receiver_receipts
from tests.support.hostile_http import HostileServer, Hostility

HOSTILE = {
    "t_huge_retry_after": Hostility(retry_after="1e308"),
    "t_far_retry_after": Hostility(retry_after="1e9"),
    "t_drip": Hostility(drip_interval=1.0),
}


def test_hostile_endpoints_of_three_tenants_do_not_stop_the_others(
    shared_run: FaultRun, receiver: ReceiverServer
) -> None:
    healthy = [f"t_h{i:02d}" for i in range(8)]
    with HostileServer(HOSTILE) as hostile:
        endpoints = receiver_endpoints(receiver, healthy)
        for tenant in HOSTILE:
            endpoints[tenant] = (hostile.endpoint_url(tenant), generate_secret())
        shared_run.seed(endpoints)
        # A small retry buffer: records parked for years must not take all of it.
        worker = shared_run.start_worker(QI_DELIVERY_RETRY_BUFFER_MAX="100")
        hostile_events = sample_events(list(HOSTILE), 600, seed=95)
        shared_run.publish(hostile_events)
        scheduled = wait_for(
            lambda: (
                worker.running
                and worker.metric("qi_retries_scheduled_total") >= 150
                and len(hostile.requests("t_drip")) > 0
            ),
            within=90,
            interval=1.0,
        )
        # Every healthy endpoint fails its first three requests, so the healthy tenants need
        # the retry path too.
        receiver.set_default_behaviour(Behaviour(fail_first_n=3, fail_status=503))
        healthy_events = sample_events(healthy, 1600, seed=96)
        shared_run.publish(healthy_events)
        wait_for_count(
            lambda: len(delivered_keys(receiver)), len(healthy_events), within=120, stall=30
        )
        wait_for(lambda: False, within=2)
        requests = {tenant: len(hostile.requests(tenant)) for tenant in HOSTILE}
        running = worker.running
        result = shared_run.account(
            hostile_events + healthy_events,
            receiver_receipts(receiver),
            "hostile-endpoints",
            held_tenants=list(HOSTILE),
        )
    print(f"hostile endpoints got {requests} requests; figures: {result.summary}")
    assert scheduled, f"the hostile tenants' records were not re-scheduled: {requests}"
    assert all(requests.values()), f"every hostile endpoint was called: {requests}"
    assert not result.violations(), result.message()
    assert result.summary["delivered"] == len(healthy_events), result.message()
    assert running, "the worker is still running"
