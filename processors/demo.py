"""``queast-integrations demo``: the local end-to-end run behind ``make run``.

1. ensures the topics;
2. seeds demo tenants: ``t_demo_acme`` (webhook and HubSpot connections; HubSpot does not take
   job ads), ``t_demo_globex`` (webhook; strict signals only) and ``t_demo_initech`` (has a
   connection but is not on the allowlist, so nothing of it is exported);
3. publishes a sample stream of valid events and one of each kind of invalid record;
4. starts the worker (``queast-integrations worker``, logging to ``.local/logs/worker.log``);
5. shows, live, the exports by destination and event type and the invalid records by reason,
   counting only what this run produced, until Ctrl-C (or ``--duration`` seconds).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from redis.asyncio import Redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from processors.kafka import ensure_topics, header_value
from processors.publishing import publish_lines
from processors.samples import invalid_samples, sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import CONNECTOR_NAMES, TopicMap

__all__ = ["DEMO_TENANTS", "run_demo"]

DEMO_TENANTS = ("t_demo_acme", "t_demo_globex", "t_demo_initech")
_ALLOWLISTED = DEMO_TENANTS[:2]
_DEMO_WEBHOOK_SECRET = "whsec_" + "ZGVtby1zZWNyZXQtbm90LWZvci1wcm9kdWN0aW9uLXVzZQ=="
_RECEIVER_URL = "http://127.0.0.1:8900/hooks/{tenant}"


def _demo_connections() -> list[ConnectionRecord]:
    def webhook(tenant: str, **extra: object) -> ConnectionRecord:
        return ConnectionRecord.model_validate(
            {
                "tenant_id": tenant,
                "connector": Connector.WEBHOOK,
                "connection_id": f"conn_{tenant}_webhook",
                "delivery_mode": DeliveryMode.WEBHOOK,
                "settings": {
                    "webhook": {
                        "url": _RECEIVER_URL.format(tenant=tenant),
                        "secret": _DEMO_WEBHOOK_SECRET,
                    },
                    "rate_limit_per_second": 50,
                },
                **extra,
            }
        )

    hubspot = ConnectionRecord.model_validate(
        {
            "tenant_id": "t_demo_acme",
            "connector": Connector.HUBSPOT,
            "connection_id": "conn_t_demo_acme_hubspot",
            "event_types": {"job_ad.published": False},
            "settings": {"auth": {"type": "private_app", "token": "demo-private-app-token"}},
        }
    )
    return [
        webhook("t_demo_acme"),
        hubspot,
        webhook("t_demo_globex", export_non_strict_signals=False),
        webhook("t_demo_initech"),
    ]


async def _seed(settings: Settings) -> None:
    box = settings.secrets.secret_box()
    redis = Redis.from_url(settings.redis.url)
    try:
        repository = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
        for tenant in _ALLOWLISTED:
            await repository.allow(tenant)
        await repository.disallow(DEMO_TENANTS[2])
        for connection in _demo_connections():
            sealed = seal_settings(
                connection.settings,
                box=box,
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
            )
            await repository.put(connection.model_copy(update={"settings": sealed}))
    finally:
        await redis.aclose()


def _watch_consumer(settings: Settings, topics: TopicMap) -> Consumer:
    """A consumer positioned at the current end of the export and invalid-event topics."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "queast-integrations-demo-watch",
            "enable.auto.commit": False,
        }
    )
    names = [topics.exports(c) for c in CONNECTOR_NAMES] + [topics.invalid_events]
    assignment: list[TopicPartition] = []
    for name in names:
        for partition in range(settings.topics.partitions):
            tp = TopicPartition(name, partition, OFFSET_END)
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            assignment.append(TopicPartition(name, partition, high))
    consumer.assign(assignment)
    return consumer


def _render(exports: Counter[tuple[str, str]], invalid: Counter[str], started: float) -> Group:
    table = Table(title=f"Exports this run ({time.monotonic() - started:.0f}s)")
    table.add_column("destination")
    table.add_column("event type")
    table.add_column("exports", justify="right")
    for (destination, event_type), count in sorted(exports.items()):
        table.add_row(destination, event_type, str(count))
    rejects = Table(title="Invalid events (integrations.dlq.invalid-events)")
    rejects.add_column("reason")
    rejects.add_column("records", justify="right")
    for reason, count in sorted(invalid.items()):
        rejects.add_row(reason, str(count))
    return Group(table, rejects)


def _publish_samples(settings: Settings, topics: TopicMap, events: int) -> int:
    lines = [to_json_line(e) for e in sample_events(DEMO_TENANTS, events)]
    lines += [
        s.line
        for s in invalid_samples("t_demo_acme", max_event_bytes=settings.routing.max_event_bytes)
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample-events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        report = publish_lines(
            (line for line in path.read_bytes().splitlines() if line),
            kafka=settings.kafka,
            topic=topics.domain_events,
        )
    return report.published


def _start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "processors", "worker"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def run_demo(settings: Settings, *, events: int, duration: float) -> int:
    """Run the demo; returns the exit code."""
    console = Console()
    topics = TopicMap(settings.topics.prefix)
    ensure_topics(settings.kafka, settings.topics, topics.all_specs())
    console.print("[bold]topics[/] ensured")
    asyncio.run(_seed(settings))
    console.print(
        f"[bold]tenants[/] seeded: {', '.join(_ALLOWLISTED)} allowlisted,"
        f" {DEMO_TENANTS[2]} not allowlisted"
    )
    consumer = _watch_consumer(settings, topics)
    published = _publish_samples(settings, topics, events)
    console.print(f"[bold]published[/] {published} domain events (valid and invalid)")
    log_path = Path(os.environ.get("QI_LOCAL_STATE_DIR", ".local")) / "logs" / "worker.log"
    worker = _start_worker(log_path)
    console.print(f"[bold]worker[/] started (pid {worker.pid}, log {log_path}); Ctrl-C to stop")
    exports: Counter[tuple[str, str]] = Counter()
    invalid: Counter[str] = Counter()
    started = time.monotonic()
    try:
        with Live(
            _render(exports, invalid, started), console=console, refresh_per_second=4
        ) as live:
            while duration <= 0 or time.monotonic() - started < duration:
                for message in consumer.consume(500, timeout=0.25):
                    if message.error() is not None:
                        continue
                    headers = message.headers()
                    if message.topic() == topics.invalid_events:
                        invalid[header_value(headers, "qi.error.reason") or "?"] += 1
                    else:
                        connector = header_value(headers, "qi.connector") or "?"
                        tenant = header_value(headers, "qi.tenant_id") or "?"
                        destination = f"{connector}:{tenant}"
                        exports[(destination, header_value(headers, "qi.event_type") or "?")] += 1
                live.update(_render(exports, invalid, started))
                if worker.poll() is not None:
                    console.print(f"[red]worker exited with {worker.returncode}; see {log_path}")
                    return 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    console.print(f"{sum(exports.values())} exports, {sum(invalid.values())} invalid events")
    return 0
