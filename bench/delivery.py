"""Webhook delivery: one worker against bare baselines, same broker and receiver, same run.

The receiver is the Standard Webhooks sandbox (``tests/sandboxes/webhook_receiver.py``) in its
own process, so the benchmark process does not share its interpreter lock.

Throughput (events/s), 10 tenants, ``--events`` events published before the worker starts:

- **client ceiling**: a bare ``httpx.AsyncClient`` POST loop at concurrency 16 with the
  transport the connectors use (and, for the record, with httpx's own transport);
- **worker**: ``queast-integrations worker`` routing and delivering them (signing, lanes,
  Redis dedupe, delivery records), measured from the first to the last request the receiver got.

Latency (publish to receiver, p50/p99) at a fixed rate (``--rate`` events/s for
``--seconds`` s):

- **bare relay**: a confluent-kafka consumer that POSTs each domain event straight to the
  receiver (no routing, no contracts, no signing, no bookkeeping): the floor for a Kafka hop
  plus an HTTP request;
- **worker**: the real path (domain event, routing, export topic, delivery).

Results are printed and written to ``bench/results/delivery.json``; the run's topics and keys
are deleted at the end.
Run: ``make bench-delivery`` (``python -m bench.delivery``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
from confluent_kafka import Consumer
from httpx_aiohttp import AiohttpTransport

from bench import _kit as kit
from bench._kit import BenchRun, store_connection
from processors.kafka import producer
from processors.samples import sample_events
from processors.secrets import SecretsSettings
from processors.settings import KafkaSettings

PARTITIONS = 8
TENANTS = tuple(f"t_bd_{i}" for i in range(10))
SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1ieXRlcy0zMi1sb25nISE="


def _received(port: int) -> list[dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{port}/_control/received", timeout=60)
    endpoints = response.json()["endpoints"]
    return [d for deliveries in endpoints.values() for d in deliveries]


def _reset(port: int) -> None:
    httpx.delete(f"http://127.0.0.1:{port}/_control", timeout=10)


async def _client_ceiling(url: str, transport: httpx.AsyncBaseTransport | None, n: int) -> float:
    body = json.dumps({"type": "bench", "timestamp": "t", "data": {"event_id": "x"}}).encode()
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(transport=transport, limits=limits) as client:

        async def loop(count: int) -> None:
            for _ in range(count):
                await client.post(url, content=body, headers={"content-type": "application/json"})

        started = time.perf_counter()
        await asyncio.gather(*(loop(n // 16) for _ in range(16)))
        return (n // 16 * 16) / (time.perf_counter() - started)


async def _seed(run: BenchRun, port: int) -> None:
    box = SecretsSettings().secret_box()
    async with run.connections() as repository:
        for tenant in TENANTS:
            block = {
                "webhook": {"url": f"http://127.0.0.1:{port}/hooks/{tenant}", "secret": SECRET},
                "rate_limit_per_second": 1000,
                "max_concurrency": 16,
            }
            await store_connection(
                repository, box, tenant, "webhook", block, delivery_mode="webhook"
            )


def _latencies(received: list[dict[str, Any]], sent: dict[str, float]) -> list[float]:
    values = []
    for delivery in received:
        data = delivery.get("data")
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if event_id in sent and 200 <= delivery["status"] < 300:
            values.append(delivery["received_at"] - sent[event_id])
    return sorted(values)


def _pct(values: list[float], q: float) -> float:
    return round(kit.percentile(values, q) * 1000, 1)


def _bare_relay(
    kafka: KafkaSettings, topic: str, url: str, count: int, stop: threading.Event
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-relay-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    relayed = 0
    with httpx.Client(transport=httpx.HTTPTransport()) as client:
        while relayed < count and not stop.is_set():
            for message in consumer.consume(100, timeout=0.05):
                if message.error() is not None:
                    continue
                event = json.loads(message.value() or b"{}")
                body = {
                    "type": event.get("event_type"),
                    "timestamp": event.get("occurred_at"),
                    "data": {"event_id": event.get("event_id")},
                }
                client.post(f"{url}/hooks/relay-{event.get('tenant_id')}", json=body)
                relayed += 1
    consumer.close()


def _outcomes(
    kafka: KafkaSettings, topic: str, count: int, timeout: float
) -> dict[str, list[float]]:
    """Finish times of delivery records by status, read from the topic (not the receiver,
    whose bookkeeping must not be queried while it is being measured)."""
    consumer = kit.topic_reader(kafka, topic)
    outcomes: dict[str, list[float]] = {}
    settled: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(settled) < count and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() is not None:
                continue
            record = json.loads(message.value() or b"{}")
            finished = datetime.fromisoformat(record["finished_at"]).timestamp()
            outcomes.setdefault(record["status"], []).append(finished)
            if record["status"] in {
                "delivered",
                "dead_lettered",
                "stale_skipped",
                "duplicate_skipped",
            }:
                settled.add(record["idempotency_key"])
    consumer.close()
    return outcomes


def _wait_for(port: int, count: int, timeout: float) -> list[dict[str, Any]]:
    """Until ``count`` deliveries arrived, or none arrived for 15 s (reported, not hidden)."""
    received: list[dict[str, Any]] = []

    def delivered() -> int:
        received[:] = _received(port)
        return len([d for d in received if 200 <= d["status"] < 300])

    kit.wait_for_progress(delivered, count, timeout=timeout, stalled_after=15, interval=1)
    return received


def main() -> int:
    parser = kit.parser(__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    port = kit.free_port()
    with BenchRun("bd", PARTITIONS) as run, kit.webhook_receiver(port, SECRET):
        result = _measure(args, run, port)
    kit.write_results("delivery", result)
    return 0


def _measure(args: argparse.Namespace, run: BenchRun, port: int) -> dict[str, Any]:
    kafka, topics = run.kafka, run.topics
    url = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"events": args.events, "tenants": len(TENANTS)}
    worker: subprocess.Popen[bytes] | None = None
    try:
        n = 4000
        result["client_ceiling_req_per_s"] = round(
            asyncio.run(_client_ceiling(f"{url}/hooks/ceiling", AiohttpTransport(), n))
        )
        result["client_ceiling_httpx_transport_req_per_s"] = round(
            asyncio.run(_client_ceiling(f"{url}/hooks/ceiling", None, n))
        )
        _reset(port)
        asyncio.run(_seed(run, port))
        events = sample_events(TENANTS, args.events, seed=3)
        print(f"publishing {len(events):,} events ...", flush=True)
        kit.publish(producer(kafka, **{"linger.ms": 5}), topics.domain_events, events)
        env = run.worker_env(
            QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
            QI_DELIVERY_LANE_CONCURRENCY="8",
            QI_ROUTING_BATCH_WITHIN_SECONDS="0.05",
        )
        print("worker: throughput ...", flush=True)
        worker = kit.start_worker(env)
        outcomes = _outcomes(kafka, topics.delivery_records, len(events), 600)
        stamps = sorted(outcomes["delivered"])
        span = stamps[-1] - stamps[0]
        result["worker_outcomes"] = {status: len(v) for status, v in outcomes.items()}
        result["worker_delivered"] = len(stamps)
        result["worker_events_per_s"] = round(len(stamps) / span)
        result["worker_to_client_ceiling"] = kit.ratio(
            result["worker_events_per_s"], result["client_ceiling_req_per_s"]
        )

        count = int(args.rate * args.seconds)
        result["latency_rate_per_s"] = args.rate
        print(f"worker: latency at {args.rate:.0f}/s ...", flush=True)
        _reset(port)
        fixed = sample_events(TENANTS, count, seed=4, version_offset=10_000)
        paced = producer(kafka, **{"linger.ms": 0})
        sent = kit.publish(paced, topics.domain_events, fixed, rate=args.rate)
        lat = _latencies(_wait_for(port, count, 120), sent)
        result["worker_latency_ms"] = {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99), "n": len(lat)}
        kit.stop_worker(worker)
        worker = None

        print(f"bare relay: latency at {args.rate:.0f}/s ...", flush=True)
        _reset(port)
        stop = threading.Event()
        relay = threading.Thread(
            target=_bare_relay, args=(kafka, topics.domain_events, url, count, stop)
        )
        relay.start()
        time.sleep(5)  # the relay's consumer joins and sits at the end of the topic
        baseline_events = sample_events(TENANTS, count, seed=5, version_offset=20_000)
        paced = producer(kafka, **{"linger.ms": 0})
        sent = kit.publish(paced, topics.domain_events, baseline_events, rate=args.rate)
        relay.join(120)
        stop.set()
        lat = _latencies(_received(port), sent)
        result["bare_relay_latency_ms"] = {
            "p50": _pct(lat, 0.5),
            "p99": _pct(lat, 0.99),
            "n": len(lat),
        }
    finally:
        kit.stop_worker(worker)
    return result


if __name__ == "__main__":
    sys.exit(main())
