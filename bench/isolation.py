"""Tenant isolation: healthy tenants' latency with and without a faulty tenant, same run.

One real worker delivers webhooks for 19 healthy tenants and one faulty one, all on the
Standard Webhooks sandbox receiver (in this process, on its own thread). Events are published
at a fixed rate (``--rate`` events/s, ``--per-phase`` events per phase, all tenants) and the
publish-to-receiver latency of the *healthy* tenants' deliveries is measured in three phases:

- **no fault** (the baseline): every endpoint answers at once;
- **hanging endpoint**: the faulty tenant's endpoint holds every request for 60 s;
- **throttled endpoint**: it answers 429 with ``Retry-After: 1`` past 2 requests/s.

Reported per phase: p50 and p99 in milliseconds, the sample count, and the p50 and p99 ratios to
the baseline (1.0 = the faulty tenant costs the others nothing). Isolation used to be asserted
by an integration test (p99 within 10 % of the baseline); a latency figure belongs here, where
it is measured against a baseline of the same run on the same machine, not in a pass/fail test.

Results are printed and written to ``bench/results/isolation.json``; the run's topics, keys and
consumer group are deleted at the end.
Run: ``make bench-isolation`` (``python -m bench.isolation --per-phase 300`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _kit as kit
from bench._kit import BenchRun, store_connection
from processors.kafka import producer
from processors.samples import sample_events
from processors.secrets import SecretsSettings
from tests.sandboxes.webhook_receiver import Behaviour, ReceiverServer, generate_secret
from tests.support.worker import WorkerProcess

PARTITIONS = 4
HEALTHY = tuple(f"t_ok_{i:02d}" for i in range(19))
FAULTY = "t_faulty"
PHASES: tuple[tuple[str, Behaviour | None], ...] = (
    ("no fault", None),
    ("hanging endpoint", Behaviour(delay_seconds=60.0)),
    ("throttled endpoint", Behaviour(rate_limit_per_second=2.0, retry_after=1.0)),
)


async def _seed(run: BenchRun, receiver: ReceiverServer) -> None:
    box = SecretsSettings().secret_box()
    async with run.connections() as repository:
        for tenant in (*HEALTHY, FAULTY):
            secret = generate_secret()
            receiver.set_secret(tenant, secret)
            block = {
                "webhook": {"url": receiver.endpoint_url(tenant), "secret": secret},
                "rate_limit_per_second": 1000,
                "max_concurrency": 8,
            }
            await store_connection(
                repository, box, tenant, "webhook", block, delivery_mode="webhook"
            )


def _latencies(receiver: ReceiverServer, sent: dict[str, float]) -> list[float]:
    values = []
    for tenant in HEALTHY:
        for delivery in receiver.received(tenant):
            event_id = delivery.data.get("event_id") if isinstance(delivery.data, dict) else None
            if delivery.delivered and event_id in sent:
                values.append(delivery.received_at - sent[event_id])
    return sorted(values)


def _wait(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return bool(condition())


def _run(args: argparse.Namespace, receiver: ReceiverServer, run: BenchRun) -> dict[str, Any]:
    kafka, topics = run.kafka, run.topics
    env = run.worker_env(
        QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        QI_ROUTING_BATCH_WITHIN_SECONDS="0.05",
        QI_DELIVERY_RETRY_BASE_DELAY_SECONDS="0.2",
        QI_DELIVERY_RETRY_MAX_DELAY_SECONDS="2",
        QI_DELIVERY_DEFER_MIN_SECONDS="0.5",
        QI_DELIVERY_DEFER_MAX_SECONDS="2",
    )
    tenants = [*HEALTHY, FAULTY]
    client = producer(kafka, **{"linger.ms": 0})
    with tempfile.TemporaryDirectory() as logs, WorkerProcess(env, Path(logs) / "worker.log"):
        # warm-up: consumer groups joined, connections and sinks open, the publisher connected
        warm = sample_events(tenants, 200, seed=50)
        kit.publish(client, topics.domain_events, warm, rate=1000.0)
        warm_ids = {e["event_id"]: 0.0 for e in warm if e["tenant_id"] != FAULTY}
        if not _wait(lambda: len(_latencies(receiver, warm_ids)) >= len(warm_ids), 120):
            raise RuntimeError("the worker did not deliver the warm-up events")
        phases: dict[str, Any] = {}
        for seed, (name, behaviour) in enumerate(PHASES, start=51):
            print(f"{name} ...", flush=True)
            receiver.set_behaviour(FAULTY, behaviour)
            events = sample_events(tenants, args.per_phase, seed=seed, version_offset=seed * 1000)
            sent = kit.publish(client, topics.domain_events, events, rate=args.rate)
            wanted = sum(1 for e in events if e["tenant_id"] != FAULTY)

            def arrived(sent: dict[str, float] = sent, wanted: int = wanted) -> bool:
                return len(_latencies(receiver, sent)) >= wanted

            if not _wait(arrived, 180):
                raise RuntimeError(f"{name}: healthy tenants' deliveries did not all arrive")
            values = _latencies(receiver, sent)
            phases[name] = {
                "p50_ms": round(kit.percentile(values, 0.5) * 1000, 1),
                "p99_ms": round(kit.percentile(values, 0.99) * 1000, 1),
                "n": len(values),
            }
        receiver.set_behaviour(FAULTY, None)
    base = phases["no fault"]
    for figures in phases.values():
        figures["p50_ratio"] = kit.ratio(figures["p50_ms"], base["p50_ms"])
        figures["p99_ratio"] = kit.ratio(figures["p99_ms"], base["p99_ms"])
    return phases


def main() -> int:
    parser = kit.parser(__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="events/s, all tenants")
    parser.add_argument("--per-phase", type=int, default=2500, help="events per phase")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "rate_per_s": args.rate,
        "events_per_phase": args.per_phase,
        "healthy_tenants": len(HEALTHY),
    }
    with BenchRun("bi", PARTITIONS) as run, ReceiverServer() as receiver:
        asyncio.run(_seed(run, receiver))
        result["phases"] = _run(args, receiver, run)
    kit.write_results("isolation", result, echo=False)
    for name, f in result["phases"].items():
        print(
            f"{name:20} healthy tenants: p50 {f['p50_ms']:.0f} ms ({f['p50_ratio']:.2f}x), "
            f"p99 {f['p99_ms']:.0f} ms ({f['p99_ratio']:.2f}x) (n={f['n']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
