"""Routing throughput: the real worker against a bare confluent-kafka loop, same broker, same run.

Both read the same 100,000 domain events (10 tenants, every event type) from one topic and
write one record per event:

- **baseline**: a bare confluent-kafka consume-then-produce loop (no parsing, no Redis, no
  encoding): the ceiling of this broker and this machine for a Python relay;
- **Faust relay** (``bench/faust_relay.py``): the worker's Faust app and settings with one agent
  that takes batches as the routing agent does and copies each record unchanged: the ceiling of
  a Faust agent here, so the worker's own cost is the gap between the two;
- **worker**: ``queast-integrations worker`` (Faust, aiokafka) routing the events: validation,
  one Redis round trip per batch, mapping, Avro encoding, produce and wait.

Throughput is records out over the span of their broker timestamps (first to last output
record), so process start-up and consumer-group joins do not count for either side. Results
are printed and written to ``bench/results/routing.json``; the run's topics and keys are
deleted at the end.

Run: ``make bench-routing`` (or ``python -m bench.routing --events 100000``).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench import _kit as kit
from bench._kit import BenchRun, store_connection
from processors.kafka import producer
from processors.samples import sample_events
from processors.settings import KafkaSettings

PARTITIONS = 8
TENANTS = tuple(f"t_bench_{i}" for i in range(10))
BASELINE_SINK = "baseline-sink"
RELAY_SINK = "faust-relay-sink"


def _timestamps(kafka: KafkaSettings, topic: str, expected: int, timeout: float) -> list[int]:
    """Broker timestamps (ms) of the first ``expected`` records of ``topic``."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex}"}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    while len(stamps) < expected and time.monotonic() < deadline:
        for message in consumer.consume(5000, timeout=0.5):
            if message.error() is None:
                stamps.append(message.timestamp()[1])
    consumer.close()
    return stamps


def _rate(stamps: list[int]) -> tuple[float, float]:
    span = (max(stamps) - min(stamps)) / 1000
    return len(stamps) / span if span > 0 else float("inf"), span


def _baseline(kafka: KafkaSettings, source: str, sink: str, events: int) -> None:
    """Consume every record and produce its value to ``sink``: nothing else."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-baseline-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([source])
    out = Producer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "linger.ms": 5,
            "acks": "all",
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
        }
    )
    relayed = 0
    while relayed < events:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() is not None:
                continue
            while True:
                try:
                    out.produce(sink, key=message.key(), value=message.value())
                    break
                except BufferError:
                    out.poll(0.05)
            relayed += 1
        out.poll(0)
    out.flush(60)
    consumer.close()


async def _seed(run: BenchRun) -> None:
    async with run.connections() as repository:
        for tenant in TENANTS:
            await store_connection(repository, None, tenant, "webhook", delivery_mode="webhook")


def main() -> int:
    parser = kit.parser(__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with BenchRun("bench", PARTITIONS, extra_topics=(BASELINE_SINK, RELAY_SINK)) as run:
        result = _measure(run, args.events)
    kit.write_results("routing", result)
    return 0 if result["worker_exports"] == result["events"] else 1


def _measure(run: BenchRun, count: int) -> dict[str, Any]:
    kafka, topics = run.kafka, run.topics
    baseline_sink = run.topic(BASELINE_SINK)
    asyncio.run(_seed(run))
    events = sample_events(TENANTS, count, seed=5)
    print(f"publishing {len(events):,} events ...", flush=True)
    kit.publish(producer(kafka), topics.domain_events, events)

    print("baseline: bare confluent-kafka consume-then-produce loop ...", flush=True)
    _baseline(kafka, topics.domain_events, baseline_sink, len(events))
    base_rate, base_span = _rate(_timestamps(kafka, baseline_sink, len(events), 120))

    print("faust relay: the worker's Faust app copying records, nothing else ...", flush=True)
    relay_sink = run.topic(RELAY_SINK)
    relay = kit.start_worker(
        run.worker_env(QI_WORKER_APP_ID=f"{run.run_id}-relay"),
        command=("bench.faust_relay", topics.domain_events, relay_sink),
    )
    try:
        relay_stamps = _timestamps(kafka, relay_sink, len(events), 600)
    finally:
        kit.stop_worker(relay)
    relay_rate, relay_span = _rate(relay_stamps)

    print("worker: queast-integrations worker ...", flush=True)
    # routing alone: delivery has its own bench
    worker = kit.start_worker(run.worker_env(QI_WORKER_DELIVERY_CONNECTORS="[]"))
    try:
        stamps = _timestamps(kafka, topics.exports("webhook"), len(events), 600)
    finally:
        kit.stop_worker(worker)
    worker_rate, worker_span = _rate(stamps)
    return {
        "events": len(events),
        "partitions": PARTITIONS,
        "baseline_events_per_s": round(base_rate),
        "baseline_span_s": round(base_span, 2),
        "worker_events_per_s": round(worker_rate),
        "worker_span_s": round(worker_span, 2),
        "worker_exports": len(stamps),
        "ratio_worker_to_baseline": kit.ratio(worker_rate, base_rate),
        "faust_relay_events_per_s": round(relay_rate),
        "faust_relay_span_s": round(relay_span, 2),
        "ratio_worker_to_faust_relay": kit.ratio(worker_rate, relay_rate),
    }


if __name__ == "__main__":
    sys.exit(main())
