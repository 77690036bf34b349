"""Routing throughput: the real worker against a bare confluent-kafka loop, same broker, same run.

Both read the same 100,000 domain events (10 tenants, every event type) from one topic and
write one record per event:

- **baseline**: a bare confluent-kafka consume-then-produce loop (no parsing, no Redis, no
  encoding): the ceiling of this broker and this machine for a Python relay;
- **worker**: ``queast-integrations worker`` (Faust, aiokafka) routing the events: validation,
  one Redis round trip per batch, mapping, Avro encoding, produce and wait.

Throughput is records out over the span of their broker timestamps (first to last output
record), so process start-up and consumer-group joins do not count for either side. Results
are printed and written to ``bench/results/routing.json``.

Run: ``make bench-routing`` (or ``python -m bench.routing --events 100000``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from redis.asyncio import Redis

from processors.kafka import ensure_topics, producer
from processors.samples import sample_events, to_json_line
from processors.settings import KafkaSettings, RedisSettings, TopicSettings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicFamily, TopicMap, TopicSpec

PARTITIONS = 8
TENANTS = tuple(f"t_bench_{i}" for i in range(10))
RESULTS = Path(__file__).resolve().parent / "results" / "routing.json"


def _publish(kafka: KafkaSettings, topic: str, events: list[dict[str, Any]]) -> None:
    client = producer(kafka)
    for event in events:
        while True:
            try:
                client.produce(topic, key=event["tenant_id"].encode(), value=to_json_line(event))
                break
            except BufferError:
                client.poll(0.05)
    client.flush(120)


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


async def _seed(redis_settings: RedisSettings) -> None:
    client = Redis.from_url(redis_settings.url)
    repository = ConnectionRepository(client, key_prefix=redis_settings.key_prefix)
    for tenant in TENANTS:
        await repository.allow(tenant)
        await repository.put(
            ConnectionRecord.model_validate(
                {
                    "tenant_id": tenant,
                    "connector": "webhook",
                    "connection_id": f"conn_{tenant}",
                    "delivery_mode": "webhook",
                }
            )
        )
    await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    run_id = f"bench{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=os.environ.get("QI_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    redis_settings = RedisSettings(
        url=os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0"), key_prefix=f"{run_id}:"
    )
    topic_settings = TopicSettings(prefix=f"{run_id}.", partitions=PARTITIONS)
    topics = TopicMap(topic_settings.prefix)
    baseline_sink = f"{run_id}.baseline-sink"
    ensure_topics(
        kafka,
        topic_settings,
        [*topics.all_specs(), TopicSpec(baseline_sink, TopicFamily.EXPORTS)],
    )
    asyncio.run(_seed(redis_settings))
    events = sample_events(TENANTS, args.events, seed=5)
    print(f"publishing {len(events):,} events ...", flush=True)
    _publish(kafka, topics.domain_events, events)

    print("baseline: bare confluent-kafka consume-then-produce loop ...", flush=True)
    _baseline(kafka, topics.domain_events, baseline_sink, len(events))
    base_rate, base_span = _rate(_timestamps(kafka, baseline_sink, len(events), 120))

    print("worker: queast-integrations worker ...", flush=True)
    env = {
        **os.environ,
        "QI_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "QI_REDIS_URL": redis_settings.url,
        "QI_REDIS_KEY_PREFIX": redis_settings.key_prefix,
        "QI_TOPIC_PREFIX": topic_settings.prefix,
        "QI_TOPIC_PARTITIONS": str(PARTITIONS),
        "QI_WORKER_APP_ID": run_id,
        "QI_METRICS_PORT": "0",
        "QI_WORKER_DELIVERY_CONNECTORS": "[]",  # routing alone: delivery has its own bench
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "processors", "worker", "--loglevel", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stamps = _timestamps(kafka, topics.exports("webhook"), len(events), 600)
    finally:
        worker.terminate()
        worker.wait(30)
    worker_rate, worker_span = _rate(stamps)
    result = {
        "events": len(events),
        "partitions": PARTITIONS,
        "baseline_events_per_s": round(base_rate),
        "baseline_span_s": round(base_span, 2),
        "worker_events_per_s": round(worker_rate),
        "worker_span_s": round(worker_span, 2),
        "worker_exports": len(stamps),
        "ratio_worker_to_baseline": round(worker_rate / base_rate, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if len(stamps) == len(events) else 1


if __name__ == "__main__":
    sys.exit(main())
