"""``queast-integrations demo``: the local end-to-end run behind ``make run``.

1. ensures the topics;
2. seeds demo tenants: ``t_demo_acme`` (webhook and HubSpot connections; HubSpot does not take
   job ads), ``t_demo_globex`` (webhook; strict signals only) and ``t_demo_initech`` (has a
   connection but is not on the allowlist, so nothing of it is exported);
3. starts a local Standard Webhooks receiver on 127.0.0.1:8900 (``tests/sandboxes``), with
   globex's endpoint answering 503 for its first 10 seconds so that retries show;
4. starts the API on 127.0.0.1:8080 (a platform-admin token for it is printed, and the console's
   sign-in URL with a tenant admin's token) and the worker,
   logging to ``.local/logs/``;
5. publishes a sample stream of valid events and one of each kind of invalid record;
6. shows, live, the exports by destination, the deliveries per connection (delivered,
   retrying, dead-lettered...) and the invalid records by reason, counting only this run,
   until Ctrl-C (or ``--duration`` seconds).

The demo sets ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`` for its processes (the receiver is on
loopback) and ``QI_AUTH_JWT_SECRET`` to a local value unless one is set.

The worker delivers for every registered connector. Acme's HubSpot exports go to a local
HubSpot sandbox (``tests/sandboxes``, port 8910, started with the demo connection's token)
unless ``QI_HUBSPOT_BASE_URL`` is set, in which case they go there. Every other connector with
a base-URL setting that is not set is named at start: its exports (none, with the demo's
connections) would go to the partner's own API.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from connectors.registry import registered
from processors.kafka import client_config, ensure_topics, header_value
from processors.publishing import publish_lines
from processors.redis_client import redis_client
from processors.samples import invalid_samples, sample_events, to_json_line
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode
from processors.tenants.repository import ConnectionRepository
from processors.tenants.seed import put_sealed
from processors.topics import TopicMap

__all__ = ["DEMO_TENANTS", "run_demo"]

DEMO_TENANTS = ("t_demo_acme", "t_demo_globex", "t_demo_initech")
_ALLOWLISTED = DEMO_TENANTS[:2]
_DEMO_WEBHOOK_SECRET = "whsec_" + "ZGVtby1zZWNyZXQtbm90LWZvci1wcm9kdWN0aW9uLXVzZQ=="
_REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout the demo runs from: the receiver sandbox lives in its ``tests/`` folder."""
_RECEIVER_PORT = 8900
_HUBSPOT_PORT = 8910
_DEMO_HUBSPOT_TOKEN = "demo-private-app-token"  # noqa: S105 - the sandbox's, not a partner's
_API_PORT = 8080
_RECEIVER_URL = f"http://127.0.0.1:{_RECEIVER_PORT}/hooks/{{tenant}}"
_DEMO_JWT_SECRET = "local-demo-jwt-secret-not-for-production"  # noqa: S105


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
            "settings": {"auth": {"type": "private_app", "token": _DEMO_HUBSPOT_TOKEN}},
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
    redis = redis_client(settings.redis)
    try:
        repository = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
        for tenant in _ALLOWLISTED:
            await repository.allow(tenant)
        await repository.disallow(DEMO_TENANTS[2])
        for connection in _demo_connections():
            await put_sealed(repository, connection, box=box)
    finally:
        await redis.aclose()


def _watch_consumer(settings: Settings, topics: TopicMap) -> Consumer:
    """A consumer positioned at the current end of the topics the demo shows."""
    consumer = Consumer(
        {
            **client_config(settings.kafka),
            "group.id": "queast-integrations-demo-watch",
            "enable.auto.commit": False,
        }
    )
    names = [topics.exports(c) for c in registered()]
    names += [topics.invalid_events, topics.delivery_records]
    assignment: list[TopicPartition] = []
    for name in names:
        for partition in range(settings.topics.partitions):
            tp = TopicPartition(name, partition, OFFSET_END)
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            assignment.append(TopicPartition(name, partition, high))
    consumer.assign(assignment)
    return consumer


@dataclass
class _Tally:
    exports: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    deliveries: dict[str, Counter[str]] = field(default_factory=dict)

    def add_delivery(self, value: bytes | None) -> None:
        try:
            record = json.loads(value or b"{}")
        except ValueError:
            return
        connection = f"{record.get('connector', '?')}:{record.get('tenant_id', '?')}"
        self.deliveries.setdefault(connection, Counter())[str(record.get("status", "?"))] += 1


_STATUSES = (
    "delivered",
    "retry_scheduled",
    "deferred",
    "parked",
    "dead_lettered",
    "duplicate_skipped",
    "stale_skipped",
)


def _render(tally: _Tally, started: float) -> Group:
    exports = Table(title=f"Exports this run ({time.monotonic() - started:.0f}s)")
    exports.add_column("destination")
    exports.add_column("event type")
    exports.add_column("exports", justify="right")
    for (destination, event_type), count in sorted(tally.exports.items()):
        exports.add_row(destination, event_type, str(count))
    deliveries = Table(title="Delivery attempts by connection (integrations.delivery-records)")
    deliveries.add_column("connection")
    for status in _STATUSES:
        deliveries.add_column(status.replace("_", " "), justify="right")
    for connection, counts in sorted(tally.deliveries.items()):
        deliveries.add_row(connection, *(str(counts.get(s, 0)) for s in _STATUSES))
    rejects = Table(title="Invalid events (integrations.dlq.invalid-events)")
    rejects.add_column("reason")
    rejects.add_column("records", justify="right")
    for reason, count in sorted(tally.invalid.items()):
        rejects.add_row(reason, str(count))
    return Group(exports, deliveries, rejects)


def _publish_samples(settings: Settings, topics: TopicMap, events: int) -> int:
    version_offset = int(time.time()) % 1_000_000 * 100  # each run: newer entity versions
    lines = [
        to_json_line(e) for e in sample_events(DEMO_TENANTS, events, version_offset=version_offset)
    ]
    lines += [
        s.line
        for s in invalid_samples("t_demo_acme", max_event_bytes=settings.routing.max_event_bytes)
    ]
    report = publish_lines(lines, kafka=settings.kafka, topic=topics.domain_events)
    return report.published


def _spawn(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=_REPO_ROOT
        )


def _wait_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        return True
    return False


def _demo_token(secret: str, *, tenant_id: str | None = None) -> str:
    """A day's platform-admin token, or a tenant admin's of ``tenant_id``."""
    claims: dict[str, object] = {
        "sub": "demo-operator" if tenant_id is None else f"demo-admin-{tenant_id}",
        "roles": ["platform_admin"] if tenant_id is None else ["tenant_admin"],
        "exp": int(time.time()) + 86400,
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    return jwt.encode(claims, secret, algorithm="HS256")


def _configure_receiver() -> None:
    base = f"http://127.0.0.1:{_RECEIVER_PORT}/_control"
    httpx.delete(base, timeout=5).raise_for_status()
    for tenant in DEMO_TENANTS:
        body: dict[str, object] = {"secret": _DEMO_WEBHOOK_SECRET}
        if tenant == "t_demo_globex":
            body["behaviour"] = {"fail_status": 503, "fail_for_seconds": 10, "retry_after": 2}
        httpx.put(f"{base}/endpoints/{tenant}", json=body, timeout=5).raise_for_status()


def _partner_sandboxes(
    console: Console, processes: list[subprocess.Popen[bytes]], logs: Path, env: dict[str, str]
) -> bool:
    """Start the HubSpot sandbox unless ``QI_HUBSPOT_BASE_URL`` is set (``env`` then points the
    worker at it), and name the connectors left on their partners' own APIs."""
    if not env.get("QI_HUBSPOT_BASE_URL"):
        sandbox = ["-m", "tests.sandboxes.hubspot", "--port", str(_HUBSPOT_PORT)]
        sandbox += ["--token", _DEMO_HUBSPOT_TOKEN]
        processes.append(_spawn(sandbox, logs / "hubspot.log", env))
        url = f"http://127.0.0.1:{_HUBSPOT_PORT}"
        if not _wait_http(url):
            console.print(f"[red]the HubSpot sandbox did not start; see {logs / 'hubspot.log'}")
            return False
        env["QI_HUBSPOT_BASE_URL"] = url
    console.print(f"[bold]hubspot[/] deliveries go to {env['QI_HUBSPOT_BASE_URL']}")
    for name, spec in registered().items():
        setting = spec.base_url_setting
        if setting is not None and not env.get(setting):
            console.print(
                f"[yellow]{name}[/] has no {setting}: its exports would go to the partner's own"
                " API (the demo seeds no connection for it)"
            )
    return True


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
    logs = Path(os.environ.get("QI_LOCAL_STATE_DIR", _REPO_ROOT / ".local")) / "logs"
    jwt_secret = os.environ.get("QI_AUTH_JWT_SECRET", _DEMO_JWT_SECRET)
    env = {
        **os.environ,
        "QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "QI_AUTH_JWT_SECRET": jwt_secret,
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            _spawn(
                ["-m", "tests.sandboxes.webhook_receiver", "--port", str(_RECEIVER_PORT)],
                logs / "receiver.log",
                env,
            )
        )
        if not _wait_http(f"http://127.0.0.1:{_RECEIVER_PORT}/_control/received"):
            console.print(f"[red]the receiver did not start; see {logs / 'receiver.log'}")
            return 1
        _configure_receiver()
        if not _partner_sandboxes(console, processes, logs, env):
            return 1
        processes.append(
            _spawn(["-m", "processors", "api", "--port", str(_API_PORT)], logs / "api.log", env)
        )
        processes.append(_spawn(["-m", "processors", "worker"], logs / "worker.log", env))
        if not _wait_http(f"http://127.0.0.1:{_API_PORT}/healthz"):
            console.print(f"[red]the API did not start; see {logs / 'api.log'}")
            return 1
        console.print(
            f"[bold]receiver[/] http://127.0.0.1:{_RECEIVER_PORT}/hooks/<tenant>"
            " (globex answers 503 for 10 s)"
        )
        console.print(f"[bold]API[/] http://127.0.0.1:{_API_PORT}/docs; try:")
        console.print(
            f"  curl -H 'Authorization: Bearer {_demo_token(jwt_secret)}' "
            f"http://127.0.0.1:{_API_PORT}/v1/tenants/t_demo_acme/deliveries?limit=5",
            soft_wrap=True,
        )
        console.print(
            f"[bold]console[/] http://127.0.0.1:{_API_PORT}/console/login; sign in with the"
            " token above (every demo tenant) or with this t_demo_acme tenant admin's:"
        )
        console.print(f"  {_demo_token(jwt_secret, tenant_id=DEMO_TENANTS[0])}", soft_wrap=True)
        console.print(f"[bold]worker[/] started; logs in {logs}; Ctrl-C to stop")
        consumer = _watch_consumer(settings, topics)
        since = datetime.now(UTC).replace(microsecond=0)
        published = _publish_samples(settings, topics, events)
        console.print(f"[bold]published[/] {published} domain events (valid and invalid)")
        code = _show(console, consumer, topics, processes, duration=duration, logs=logs)
        _print_operator_commands(console, since=since, sample=_write_sample_event(logs))
        return code
    finally:
        _stop(processes)


def _write_sample_event(logs: Path) -> Path:
    """One valid domain event of the first demo tenant, for the preview command."""
    path = logs / "sample-event.json"
    event = next(e for e in sample_events([DEMO_TENANTS[0]], 50, seed=7) if _is_company(e))
    # an entity the run did not deliver, so the preview shows the whole request
    event["data"]["company_id"] = "co_preview"
    path.write_bytes(to_json_line(event) + b"\n")
    return path


def _is_company(event: dict[str, object]) -> bool:
    return event.get("event_type") == "company.upserted"


def _print_operator_commands(console: Console, *, since: datetime, sample: Path) -> None:
    """What an operator can try next against the demo tenants (README: "Operator runs")."""
    acme, globex = DEMO_TENANTS[0], DEMO_TENANTS[1]
    window = since.isoformat().replace("+00:00", "Z")
    commands = (
        ("what a connection would send", f"preview --tenant {acme} --connector webhook {sample}"),
        (
            "replay this run's webhooks, counting only",
            f"replay --tenant {acme} --connector webhook --since {window} --dry-run",
        ),
        ("the dead letters of a tenant", f"dlq list --tenant {globex} --connector webhook"),
        (
            "map this run's events again, counting only",
            f"backfill --tenant {acme} --connector webhook --since {window} --dry-run",
        ),
    )
    console.print("[bold]try next[/] (operator commands, with the same environment):")
    for what, command in commands:
        console.print(f"  # {what}\n  queast-integrations {command}", soft_wrap=True)


def _show(
    console: Console,
    consumer: Consumer,
    topics: TopicMap,
    processes: list[subprocess.Popen[bytes]],
    *,
    duration: float,
    logs: Path,
) -> int:
    tally = _Tally()
    started = time.monotonic()
    try:
        with Live(_render(tally, started), console=console, refresh_per_second=4) as live:
            while duration <= 0 or time.monotonic() - started < duration:
                for message in consumer.consume(500, timeout=0.25):
                    if message.error() is not None:
                        continue
                    headers = message.headers()
                    topic = message.topic()
                    if topic == topics.invalid_events:
                        tally.invalid[header_value(headers, "qi.error.reason") or "?"] += 1
                    elif topic == topics.delivery_records:
                        tally.add_delivery(message.value())
                    else:
                        connector = header_value(headers, "qi.connector") or "?"
                        tenant = header_value(headers, "qi.tenant_id") or "?"
                        event_type = header_value(headers, "qi.event_type") or "?"
                        tally.exports[(f"{connector}:{tenant}", event_type)] += 1
                live.update(_render(tally, started))
                if any(process.poll() is not None for process in processes):
                    console.print(f"[red]a process exited; see the logs in {logs}")
                    return 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    delivered = sum(c.get("delivered", 0) for c in tally.deliveries.values())
    console.print(
        f"{sum(tally.exports.values())} exports, {delivered} delivered,"
        f" {sum(tally.invalid.values())} invalid events"
    )
    return 0
