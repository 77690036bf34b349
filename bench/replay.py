"""Replay next to the live path: the same artifacts, the same worker and receiver, same run.

One tenant, ``--events`` events of distinct entities (so no replayed copy is an older version
than the one delivered), published before the worker starts. The receiver is the Standard
Webhooks sandbox in its own process.

- **live** (baseline): the worker routes and delivers them; artifacts per second from the
  first to the last delivered record (``integrations.delivery-records`` finish times);
- **replay**: then ``ReplayService.replay`` (what ``queast-integrations replay`` runs) re-reads
  the tenant's whole export window and the same worker delivers every copy again. Measured
  from the start of the run to the last delivered record carrying its replay id (reading the
  history, queuing the copies and delivering them), and the reading and queuing alone.

Reported: both absolute figures, the replay's time for the artifacts, and the ratio of the
replay's rate to the live rate. Results in ``bench/results/replay.json``; the run's topics,
keys and groups are deleted at the end. Run: ``make bench-replay`` (``python -m bench.replay``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bench import _kit as kit
from bench._kit import BenchRun, store_connection
from processors.kafka import producer
from processors.operations.replay import ReplayRequest, ReplayService
from processors.samples import sample_events
from processors.secrets import SecretsSettings
from processors.settings import KafkaSettings, Settings, TopicSettings

PARTITIONS = 8
TENANT = "t_br_0"
SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1ieXRlcy0zMi1sb25nISE="
_ID_FIELDS = {"company": "company_id", "person": "person_id", "signal": "signal_id"}
_ID_FIELDS["job_ad"] = "job_ad_id"


def _distinct_entities(count: int) -> list[dict[str, Any]]:
    """``count`` events of the tenant, each of another entity."""
    seen: set[tuple[str, object]] = set()
    kept: list[dict[str, Any]] = []
    for event in sample_events([TENANT], count * 3, seed=17):
        family = event["event_type"].split(".", maxsplit=1)[0]
        entity = (family, event["data"][_ID_FIELDS[family]])
        if entity not in seen:
            seen.add(entity)
            kept.append(event)
            if len(kept) == count:
                return kept
    msg = f"the sample stream has fewer than {count} entities"
    raise RuntimeError(msg)


async def _seed(run: BenchRun, port: int) -> None:
    box = SecretsSettings().secret_box()
    async with run.connections() as repository:
        block = {
            "webhook": {"url": f"http://127.0.0.1:{port}/hooks/{TENANT}", "secret": SECRET},
            "rate_limit_per_second": 1000,
            "max_concurrency": 16,
        }
        await store_connection(repository, box, TENANT, "webhook", block, delivery_mode="webhook")


class _Records:
    """Delivered records read from the delivery-records topic as they come."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._consumer = kit.topic_reader(kafka, topic)
        self.delivered: dict[str | None, dict[str, float]] = {}
        """Replay id (``None``: live) -> idempotency key -> finish time."""

    def read_until(self, replay_id: str | None, count: int, *, timeout: float) -> list[float]:
        """Finish times of ``count`` delivered keys of ``replay_id`` (fewer if it stalls)."""

        def progress() -> int:
            for message in self._consumer.consume(2000, timeout=0.5):
                if message.error() is not None:
                    continue
                record = json.loads(message.value() or b"{}")
                if record["status"] == "delivered":
                    finished = datetime.fromisoformat(record["finished_at"]).timestamp()
                    by_key = self.delivered.setdefault(record.get("replay_id"), {})
                    by_key.setdefault(record["idempotency_key"], finished)
            return len(self.delivered.get(replay_id, {}))

        if not kit.wait_for_progress(
            progress, count, timeout=timeout, stalled_after=120, interval=0
        ):
            print(f"stalled at {progress()} of {count} delivered", file=sys.stderr)
        found = sorted(self.delivered.get(replay_id, {}).values())
        if len(found) < 2:
            msg = "nothing was delivered: see the worker (QI_LOG_LEVEL) and the receiver"
            raise RuntimeError(msg)
        return found

    def close(self) -> None:
        self._consumer.close()


def _settings(run: BenchRun) -> Settings:
    return Settings(
        kafka=run.kafka,
        redis=run.redis,
        topics=TopicSettings(prefix=run.topic_settings.prefix, partitions=PARTITIONS),
    )


async def _replay(run: BenchRun, since: datetime) -> tuple[str, int, float, float]:
    """Run a replay of everything since ``since``; (id, queued, start time, seconds taken)."""
    client = Redis.from_url(run.redis.url)
    try:
        service = ReplayService(_settings(run), client)
        started = time.time()
        clock = time.perf_counter()
        outcome = await service.replay(
            ReplayRequest(tenant_id=TENANT, connector="webhook", since=since, requested_by="bench")
        )
        return outcome.run.run_id, outcome.run.queued, started, time.perf_counter() - clock
    finally:
        await client.aclose()


def main() -> int:
    parser = kit.parser(__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    port = kit.free_port()
    with BenchRun("br", PARTITIONS) as run, kit.webhook_receiver(port, SECRET):
        result = _measure(args, run, port)
    kit.write_results("replay", result)
    return 0


def _measure(args: argparse.Namespace, run: BenchRun, port: int) -> dict[str, Any]:
    result: dict[str, Any] = {"events": args.events, "tenants": 1}
    worker: subprocess.Popen[bytes] | None = None
    records = _Records(run.kafka, run.topics.delivery_records)
    try:
        asyncio.run(_seed(run, port))
        events = _distinct_entities(args.events)
        since = datetime.now(UTC) - timedelta(seconds=5)
        print(f"publishing {len(events):,} events ...", flush=True)
        kit.publish(producer(run.kafka, **{"linger.ms": 5}), run.topics.domain_events, events)
        env = run.worker_env(
            QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
            QI_DELIVERY_LANE_CONCURRENCY="8",
            QI_ROUTING_BATCH_WITHIN_SECONDS="0.05",
        )
        print("live: the worker delivers them ...", flush=True)
        worker = kit.start_worker(env)
        live = records.read_until(None, len(events), timeout=600)
        live_span = live[-1] - live[0]
        result["live_delivered"] = len(live)
        result["live_seconds"] = round(live_span, 2)
        result["live_per_s"] = round(len(live) / live_span)

        print("replay: the same artifacts again ...", flush=True)
        replay_id, queued, started, queuing = asyncio.run(_replay(run, since))
        replayed = records.read_until(replay_id, queued, timeout=600)
        total = replayed[-1] - started
        result["replay_queued"] = queued
        result["replay_delivered"] = len(replayed)
        result["replay_read_and_queue_seconds"] = round(queuing, 2)
        result["replay_seconds"] = round(total, 2)
        result["replay_per_s"] = round(len(replayed) / total)
        result["replay_to_live"] = kit.ratio(result["replay_per_s"], result["live_per_s"])
    finally:
        kit.stop_worker(worker)
        records.close()
    return result


if __name__ == "__main__":
    sys.exit(main())
