"""The broker or Redis stopped and restarted, or Redis flushed, while a worker is running.

These scenarios run on the session's private broker and Redis (never the shared ones).
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from processors.samples import sample_events
from tests.faults.conftest import (
    PARTITIONS,
    FaultRun,
    PrivateServices,
    delivered_keys,
    receiver_endpoints,
    wait_for,
    wait_for_count,
)
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer
from tests.support.accounting import receiver_receipts

BROKER_OUTAGE_S = 20.0
REDIS_OUTAGE_S = 10.0


def _tail(run: FaultRun, lines: int = 15) -> str:
    return "\n".join(run.logs().splitlines()[-lines:])


def test_broker_stopped_for_twenty_seconds_mid_run_loses_nothing(
    private_services: PrivateServices, private_run: FaultRun, receiver: ReceiverServer
) -> None:
    tenants = [f"t_b{i:02d}" for i in range(10)]
    private_run.seed(receiver_endpoints(receiver, tenants))
    receiver.set_default_behaviour(Behaviour(delay_seconds=0.02))
    before = sample_events(tenants, 1500, seed=81)
    after = sample_events(tenants, 1500, seed=82, version_offset=1000)
    private_run.publish(before)
    worker = private_run.start_worker()
    assert wait_for(lambda: len(delivered_keys(receiver)) >= 500, within=120)
    private_services.kafka.stop()
    stopped = time.monotonic()
    at_stop = len(delivered_keys(receiver))
    time.sleep(max(0.0, BROKER_OUTAGE_S - (time.monotonic() - stopped)))
    private_services.kafka.start()
    private_run.publish(after)
    events = before + after
    wait_for_count(lambda: len(delivered_keys(receiver)), len(events), within=180, stall=45)
    wait_for(lambda: False, within=2)
    result = private_run.account(events, receiver_receipts(receiver), "broker-outage")
    print(f"delivered {at_stop} when the broker stopped; figures: {result.summary}")
    assert not result.violations(), f"{result.message()}\nworker log tail:\n{_tail(private_run)}"
    assert worker.running, f"the worker exited during the outage:\n{_tail(private_run)}"


def test_redis_stopped_for_ten_seconds_mid_run_agents_survive_and_lose_nothing(
    private_services: PrivateServices, private_run: FaultRun, receiver: ReceiverServer
) -> None:
    tenants = [f"t_r{i:02d}" for i in range(10)]
    private_run.seed(receiver_endpoints(receiver, tenants))
    receiver.set_default_behaviour(Behaviour(delay_seconds=0.02))
    events = sample_events(tenants, 3000, seed=83)
    private_run.publish(events)
    worker = private_run.start_worker()
    assert wait_for(lambda: len(delivered_keys(receiver)) >= 800, within=120)
    private_services.redis.stop()
    at_stop = len(delivered_keys(receiver))
    time.sleep(REDIS_OUTAGE_S)
    private_services.redis.start()
    wait_for_count(lambda: len(delivered_keys(receiver)), len(events), within=120, stall=30)
    wait_for(lambda: False, within=2)
    result = private_run.account(events, receiver_receipts(receiver), "redis-outage")
    print(f"delivered {at_stop} when Redis stopped; figures: {result.summary}")
    assert not result.violations(), f"{result.message()}\nworker log tail:\n{_tail(private_run)}"
    assert worker.running, f"the worker exited during the outage:\n{_tail(private_run)}"


def _committed(run: FaultRun) -> int:
    """Offsets the worker's group committed on the domain events topic, summed."""
    consumer = Consumer({"bootstrap.servers": run.bootstrap_servers, "group.id": run.test_id})
    try:
        partitions = [TopicPartition(run.topics.domain_events, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=20))
    finally:
        consumer.close()


def test_redis_flushed_mid_run_stops_routing_loudly_until_config_is_restored(
    private_services: PrivateServices, private_run: FaultRun, receiver: ReceiverServer
) -> None:
    tenants = [f"t_f{i:02d}" for i in range(10)]
    endpoints = receiver_endpoints(receiver, tenants)
    private_run.seed(endpoints)
    before = sample_events(tenants, 1000, seed=84)
    after = sample_events(tenants, 1000, seed=85, version_offset=1000)
    private_run.publish(before)
    worker = private_run.start_worker()
    assert wait_for(lambda: len(delivered_keys(receiver)) >= len(before), within=120)
    assert wait_for(lambda: _committed(private_run) >= len(before), within=30)

    private_services.redis.flushall()
    lines_before = len(worker.log_events())
    private_run.publish(after)
    loud = wait_for(
        lambda: any(
            e.get("level") in {"error", "critical"}
            and str(e.get("logger", "")).startswith("processors")
            for e in worker.log_events()[lines_before:]
        ),
        within=30,
        interval=1.0,
    )
    time.sleep(3)  # whatever the worker would do with the new events, it has done by now
    committed_past_loss = _committed(private_run) - len(before)
    skipped = worker.metric("qi_events_skipped_total", reason="tenant_not_allowlisted")
    errors = [
        f"{e.get('logger')}: {e.get('event')}"
        for e in worker.log_events()[lines_before:]
        if e.get("level") in {"error", "critical"}
    ]

    private_run.seed(endpoints)  # the operator restores the configuration
    wait_for(
        lambda: len(delivered_keys(receiver)) >= len(before) + len(after) or skipped > 0,
        within=90,
    )
    wait_for(lambda: False, within=2)
    result = private_run.account(before + after, receiver_receipts(receiver), "redis-flush")
    print(
        f"after the flush: error logged {loud} ({errors[:3]}), {committed_past_loss} offsets "
        f"committed past the loss, {skipped:.0f} events skipped as not allowlisted; "
        f"figures: {result.summary}"
    )
    assert loud, f"no error logged after the flush; {result.message()}"
    assert skipped == 0, f"{skipped:.0f} events dropped as not allowlisted; {result.message()}"
    assert committed_past_loss <= 0, (
        f"{committed_past_loss} offsets committed past the loss; {result.message()}"
    )
    assert not result.violations(), result.message()
    assert worker.running, f"the worker exited:\n{_tail(private_run)}"
