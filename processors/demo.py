"""``queast-integrations demo``: the local end-to-end run behind ``make run``.

1. ensures the topics;
2. seeds demo tenants: ``t_demo_acme`` (webhook and HubSpot connections, both with inbound
   enabled; HubSpot does not take job ads), ``t_demo_globex`` (webhook, strict signals only,
   and Pipedrive) and ``t_demo_initech`` (has a connection but is not on the allowlist, so
   nothing of it is exported);
3. starts a local Standard Webhooks receiver on 127.0.0.1:8900 (``tests/sandboxes``), with
   globex's endpoint answering 503 for its first 10 seconds so that retries show, and the
   HubSpot (8910) and Pipedrive (8920) sandboxes;
4. starts the API on 127.0.0.1:8080 (a platform-admin token for it is printed, and the console's
   sign-in URL with a tenant admin's token) and the worker,
   logging to ``.local/logs/``;
5. publishes a sample stream of valid events and one of each kind of invalid record;
6. a few seconds in, posts two signed ``company.interest`` webhooks to the API's intake (acme's
   webhook connection): one naming a known company's domain (a bookmark), one naming a name two
   of acme's companies share (a review); when the review appears it prints the ``curl`` that
   resolves it;
7. shows, live, the exports by destination, the deliveries per connection (delivered,
   retrying, dead-lettered...), the invalid records by reason and the bookmarks and reviews,
   counting only this run, until Ctrl-C (or ``--duration`` seconds).

The demo sets ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`` for its processes (the receiver is on
loopback) and ``QI_AUTH_JWT_SECRET`` to a local value unless one is set.

Partner sandboxes: the worker delivers for every registered connector. HubSpot and Pipedrive
exports go to the local sandboxes (``tests/sandboxes``), started with the demo connections'
tokens (and, for Pipedrive, an account whose custom field keys the connection names), unless
``QI_HUBSPOT_BASE_URL`` / ``QI_PIPEDRIVE_BASE_URL`` is set, in which case they go there. Every
other connector with a base-URL setting that is not set is named at start: its exports (none,
with the demo's connections) would go to the partner's own API.

Decisions:

- the sandboxes keep everything in memory, so each run starts them empty; the demo then deletes
  what earlier runs kept for those connections (identity links, delivery state), else every
  update of a company linked in a previous run is dead-lettered as "no longer exists";
- the sample stream gives a tenant signals and people at companies it never upserts; HubSpot
  and Pipedrive attach a signal (a note) to the partner's company, which would never exist, so
  those waited ("not linked yet") until dead-lettered: the reason the demo's HubSpot exports
  were not delivered. The demo publishes an upsert of each such company first, as a real
  producer would;
- the interests are signed by the connector's own signer (``connectors.webhook.payloads.sign``)
  with the inbound secret of acme's webhook connection and sent over HTTP, so they go through
  the same intake as a partner's; the HubSpot connection's inbound block is enabled too (its
  client secret is the demo's) so ``POST /webhooks/hubspot/t_demo_acme`` can be tried;
- the HubSpot sandbox starts with two companies named like acme's Northwind Traders (other
  domains), so its upsert waits for review: the console's Matches page has a pending match to
  confirm from the first run, as the README's walk-through expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from connectors.registry import registered
from connectors.webhook.payloads import sign
from processors.kafka import client_config, ensure_topics, header_value
from processors.publishing import publish_lines
from processors.redis_client import redis_client
from processors.samples import invalid_samples, sample_company, sample_events, to_json_line
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
_PIPEDRIVE_PORT = 8920
_DEMO_PIPEDRIVE_TOKEN = "demo-pipedrive-api-token"  # noqa: S105 - the sandbox's
_PIPEDRIVE_ACCOUNT = "queast-demo"
_PIPEDRIVE_DOMAIN_KEY = "d0" * 20
"""The sandbox account's domain field key (fixed, so the seeded connection can name it)."""
_PIPEDRIVE_QUEAST_ID_KEY = "a1" * 20
_DEMO_INBOUND_SECRET = "whsec_" + "ZGVtby1pbmJvdW5kLXNlY3JldC1ub3QtZm9yLXByb2R1Y3Rpb24="
_DEMO_HUBSPOT_CLIENT_SECRET = "demo-hubspot-client-secret"  # noqa: S105 - the sandbox's
_INBOUND_TENANT = "t_demo_acme"
_KNOWN_COMPANY = {
    "company_id": "co_demo_northwind",
    "name": "Northwind Traders",
    "domain": "northwind-demo.com",
}
_TWIN_COMPANIES = (
    {"company_id": "co_demo_contoso_de", "name": "Contoso Labs", "domain": "contoso-labs.de"},
    {"company_id": "co_demo_contoso_fr", "name": "Contoso Labs", "domain": "contoso-labs.fr"},
)
"""Two companies of the inbound tenant sharing a name: an interest naming it waits for review."""
_HUBSPOT_LOOKALIKES = (
    {"name": "Northwind Traders", "domain": "northwind-traders.example"},
    {"name": "Northwind Traders", "domain": "northwindtraders.example"},
)
"""Two HubSpot companies named like acme's Northwind (other domains): its upsert matches both by
name, so it waits, held, for a tenant admin to pick one (a pending match in the console)."""
_INBOUND_AFTER_SECONDS = 8.0
"""How long into the live view the signed interests are sent (the directory has the companies)."""
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
            "tenant_id": _INBOUND_TENANT,
            "connector": Connector.HUBSPOT,
            "connection_id": f"conn_{_INBOUND_TENANT}_hubspot",
            "event_types": {"job_ad.published": False},
            "settings": {
                "auth": {"type": "private_app", "token": _DEMO_HUBSPOT_TOKEN},
                "inbound": {"enabled": True, "client_secret": _DEMO_HUBSPOT_CLIENT_SECRET},
            },
        }
    )
    pipedrive = ConnectionRecord.model_validate(
        {
            "tenant_id": "t_demo_globex",
            "connector": Connector.PIPEDRIVE,
            "connection_id": "conn_t_demo_globex_pipedrive",
            "event_types": {"job_ad.published": False},
            "settings": {
                "auth": {"type": "api_token", "token": _DEMO_PIPEDRIVE_TOKEN},
                "domain_field_key": _PIPEDRIVE_DOMAIN_KEY,
                "queast_id_field_key": _PIPEDRIVE_QUEAST_ID_KEY,
            },
        }
    )
    acme = webhook(_INBOUND_TENANT)
    acme_settings = {**acme.settings, "inbound": {"enabled": True, "secret": _DEMO_INBOUND_SECRET}}
    return [
        acme.model_copy(update={"settings": acme_settings}),
        hubspot,
        webhook("t_demo_globex", export_non_strict_signals=False),
        pipedrive,
        webhook("t_demo_initech"),
    ]


async def _seed(settings: Settings, *, fresh_sandboxes: Collection[str]) -> None:
    """Allowlist and store the demo connections. The connections of ``fresh_sandboxes`` (the
    connectors whose in-memory sandbox this run starts empty) lose what earlier runs kept for
    them: their identity links would name partner objects that no longer exist, and every
    update of a linked company would be dead-lettered as "no longer exists"."""
    box = settings.secrets.secret_box()
    redis = redis_client(settings.redis)
    try:
        repository = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
        for tenant in _ALLOWLISTED:
            await repository.allow(tenant)
        await repository.disallow(DEMO_TENANTS[2])
        for connection in _demo_connections():
            if connection.connector.value in fresh_sandboxes:
                await repository.forget_connection(connection.connection_id)
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
    names += [topics.invalid_events, topics.delivery_records, topics.bookmarks]
    names += [topics.match_review]
    assignment: list[TopicPartition] = []
    for name in names:
        for partition in range(settings.topics.partitions):
            tp = TopicPartition(name, partition, OFFSET_END)
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            assignment.append(TopicPartition(name, partition, high))
    consumer.assign(assignment)
    return consumer


@dataclass(frozen=True)
class _Inbound:
    """Where the demo sends its signed interests, and what it prints for a review."""

    api: str
    token: str
    """A tenant admin's token of the inbound tenant (the curl's bearer)."""
    console_url: str


@dataclass
class _Tally:
    exports: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    deliveries: dict[str, Counter[str]] = field(default_factory=dict)
    bookmarks: Counter[str] = field(default_factory=Counter)
    """Bookmarks produced this run, by the strategy that matched."""
    reviews: list[dict[str, object]] = field(default_factory=list)
    """``integrations.match-review`` records this run (highlights waiting for a person)."""

    def add_inbound(self, topic: str, topics: TopicMap, value: bytes | None) -> dict[str, object]:
        """Count a bookmark or a review record; returns the record (empty if unreadable)."""
        try:
            record = json.loads(value or b"{}")
        except ValueError:
            return {}
        if not isinstance(record, dict):
            return {}
        if topic == topics.bookmarks:
            match = record.get("match")
            strategy = match.get("strategy") if isinstance(match, dict) else None
            self.bookmarks[str(strategy or "?")] += 1
        else:
            self.reviews.append(record)
        return record

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
    inbound = Table(title="Inbound (queast.bookmarks, integrations.match-review)")
    inbound.add_column("outcome")
    inbound.add_column("records", justify="right")
    for strategy, count in sorted(tally.bookmarks.items()):
        inbound.add_row(f"bookmark (matched by {strategy})", str(count))
    inbound.add_row("waiting for review", str(len(tally.reviews)))
    return Group(exports, deliveries, rejects, inbound)


def _publish_samples(settings: Settings, topics: TopicMap, events: int) -> int:
    version_offset = int(time.time()) % 1_000_000 * 100  # each run: newer entity versions
    stream = sample_events(DEMO_TENANTS, events, version_offset=version_offset)
    first = _company_events(version=version_offset + 1)
    first += _referenced_companies(stream, version=version_offset + 1)
    lines = [to_json_line(e) for e in [*first, *stream]]
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


def _base_url_setting(name: str) -> str:
    return f"QI_{name.upper()}_BASE_URL"


def _partner_sandboxes(
    console: Console, processes: list[subprocess.Popen[bytes]], logs: Path, env: dict[str, str]
) -> bool:
    """Start the HubSpot and Pipedrive sandboxes unless ``QI_<NAME>_BASE_URL`` names another
    (``env`` then points the worker at them), and name the connectors left on their partners'
    own APIs."""
    for name, (port, extra, prepare) in _SANDBOXES.items():
        setting = _base_url_setting(name)
        if not env.get(setting):
            command = ["-m", f"tests.sandboxes.{name}", "--port", str(port), *extra]
            processes.append(_spawn(command, logs / f"{name}.log", env))
            url = f"http://127.0.0.1:{port}"
            if not _wait_http(url):
                console.print(f"[red]the {name} sandbox did not start; see {logs / name}.log")
                return False
            if prepare is not None:
                prepare(url)
            env[setting] = url
        console.print(f"[bold]{name}[/] deliveries go to {env[setting]}")
    for name, spec in registered().items():
        unset = spec.base_url_setting
        if unset is not None and not env.get(unset):
            console.print(
                f"[yellow]{name}[/] has no {unset}: its exports would go to the partner's own"
                " API (the demo seeds no connection for it)"
            )
    return True


def _add_pipedrive_account(url: str) -> None:
    """The account the demo's Pipedrive connection writes to, with the field keys it names."""
    account = {
        "name": _PIPEDRIVE_ACCOUNT,
        "api_tokens": [_DEMO_PIPEDRIVE_TOKEN],
        "domain_field_key": _PIPEDRIVE_DOMAIN_KEY,
        "queast_id_field_key": _PIPEDRIVE_QUEAST_ID_KEY,
    }
    httpx.post(f"{url}/_control/accounts", json=account, timeout=5).raise_for_status()


def _company_upserted(tenant: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "company.upserted",
        "schema_version": "1.0",
        "tenant_id": tenant,
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": str(uuid.uuid4()),
        "data": data,
    }


def _company_events(*, version: int) -> list[dict[str, Any]]:
    """``company.upserted`` of the inbound tenant: the directory learns these companies."""
    return [
        _company_upserted(
            _INBOUND_TENANT, {**company, "domains": [company["domain"]], "version": version}
        )
        for company in (_KNOWN_COMPANY, *_TWIN_COMPANIES)
    ]


def _referenced_companies(stream: list[dict[str, Any]], *, version: int) -> list[dict[str, Any]]:
    """``company.upserted`` for every company a tenant's signals and people name but its part
    of ``stream`` never upserts (nor deletes).

    The sample stream spreads companies, people and signals over the tenants independently,
    so a tenant gets signals about companies it never sent. The webhook connector delivers
    those anyway, but HubSpot and Pipedrive attach a signal (a note) to the partner's company
    record, which is never created: the note waits ("company not linked yet") until it is
    dead-lettered. A real producer sends the company first; so does the demo.
    """
    known: set[tuple[str, str]] = set()
    named: dict[tuple[str, str], None] = {}
    for event in stream:
        data, tenant = event["data"], event["tenant_id"]
        if event["event_type"] in ("company.upserted", "company.deleted"):
            known.add((tenant, data["company_id"]))
        elif event["event_type"] in ("signal.emitted", "person.upserted"):
            company_id = data.get("company_id")
            if isinstance(company_id, str) and company_id.startswith("co_"):
                named[(tenant, company_id)] = None
    return [
        _company_upserted(tenant, sample_company(int(company_id[3:]), version=version))
        for tenant, company_id in named
        if (tenant, company_id) not in known
    ]


def _interest_request(
    company: dict[str, str], *, message_id: str, now: int
) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks ``company.interest`` body and its headers, signed with the demo
    connection's inbound secret by the connector's own signer."""
    body = json.dumps(
        {
            "type": "company.interest",
            "timestamp": datetime.fromtimestamp(now, tz=UTC).isoformat(),
            "data": {"company": company, "note": "interest from the demo"},
        }
    ).encode()
    signature = sign(
        secret=SecretStr(_DEMO_INBOUND_SECRET), message_id=message_id, timestamp=now, body=body
    )
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    return body, headers


def _send_interests(api: str) -> list[str]:
    """Post the two signed interests to the running API; one line per answer."""
    interests = (
        ("by domain", {"domain": _KNOWN_COMPANY["domain"]}),
        ("by a shared name", {"name": _TWIN_COMPANIES[0]["name"]}),
    )
    url = f"{api}/webhooks/webhook/{_INBOUND_TENANT}"
    lines = []
    for what, company in interests:
        body, headers = _interest_request(
            company, message_id=f"msg_{uuid.uuid4().hex}", now=int(time.time())
        )
        try:
            answer = httpx.post(url, content=body, headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            lines.append(f"interest {what}: {type(exc).__name__}")
            continue
        lines.append(f"interest {what}: POST {url} -> {answer.status_code}")
    return lines


def _resolve_curl(api: str, review: dict[str, object], token: str) -> str | None:
    """The ``curl`` that resolves ``review`` (an ``integrations.match-review`` record) to its
    first candidate, or ``None`` when the record is not a pending review with candidates."""
    review_id, tenant, candidates = (
        review.get("review_id"),
        review.get("tenant_id"),
        review.get("candidates"),
    )
    if not isinstance(review_id, str) or not isinstance(tenant, str):
        return None
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        return None
    body = json.dumps({"company_id": candidates[0].get("company_id")})
    return (
        f"curl -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json'"
        f" -d '{body}' {api}/v1/tenants/{tenant}/inbound/reviews/{review_id}/resolve"
    )


def _add_hubspot_lookalikes(url: str) -> None:
    """Seed the sandbox's portal with :data:`_HUBSPOT_LOOKALIKES`."""
    for properties in _HUBSPOT_LOOKALIKES:
        httpx.post(
            f"{url}/_control/portals/1/objects/companies",
            json={"properties": properties},
            timeout=5,
        ).raise_for_status()


_SANDBOXES: dict[str, tuple[int, list[str], Callable[[str], None] | None]] = {
    "hubspot": (_HUBSPOT_PORT, ["--token", _DEMO_HUBSPOT_TOKEN], _add_hubspot_lookalikes),
    "pipedrive": (_PIPEDRIVE_PORT, [], _add_pipedrive_account),
}
"""The partner sandboxes the demo starts (port, arguments, setup once it answers)."""


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
    sandboxes = [name for name in _SANDBOXES if not os.environ.get(_base_url_setting(name))]
    asyncio.run(_seed(settings, fresh_sandboxes=sandboxes))
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
        _print_api_hints(console, jwt_secret)
        console.print(f"[bold]worker[/] started; logs in {logs}; Ctrl-C to stop")
        consumer = _watch_consumer(settings, topics)
        since = datetime.now(UTC).replace(microsecond=0)
        published = _publish_samples(settings, topics, events)
        console.print(f"[bold]published[/] {published} domain events (valid and invalid)")
        api = f"http://127.0.0.1:{_API_PORT}"
        inbound = _Inbound(
            api=api,
            token=_demo_token(jwt_secret, tenant_id=_INBOUND_TENANT),
            console_url=f"{api}/console/t/{_INBOUND_TENANT}/inbound-reviews",
        )
        code = _show(
            console, consumer, topics, processes, duration=duration, logs=logs, inbound=inbound
        )
        _print_operator_commands(console, since=since, sample=_write_sample_event(logs))
        return code
    finally:
        _stop(processes)


def _print_api_hints(console: Console, jwt_secret: str) -> None:
    """The API's address with a ``curl`` to try, and the console's sign-in URL with tokens."""
    api = f"http://127.0.0.1:{_API_PORT}"
    console.print(f"[bold]API[/] {api}/docs; try:")
    console.print(
        f"  curl -H 'Authorization: Bearer {_demo_token(jwt_secret)}' "
        f"{api}/v1/tenants/{DEMO_TENANTS[0]}/deliveries?limit=5",
        soft_wrap=True,
    )
    console.print(
        f"[bold]console[/] {api}/console/login; sign in with the token above (every demo"
        f" tenant) or with this {DEMO_TENANTS[0]} tenant admin's:"
    )
    console.print(f"  {_demo_token(jwt_secret, tenant_id=DEMO_TENANTS[0])}", soft_wrap=True)
    console.print(
        f"  then open Matches ({api}/console/t/{DEMO_TENANTS[0]}/matches): once the worker"
        f" has sent it, {_KNOWN_COMPANY['name']} waits for review there (two HubSpot companies"
        " share its name); Confirm links it and delivers its held record",
        soft_wrap=True,
    )


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
    inbound: _Inbound,
) -> int:
    tally = _Tally()
    started = time.monotonic()
    sent = False
    try:
        with Live(_render(tally, started), console=console, refresh_per_second=4) as live:
            while duration <= 0 or time.monotonic() - started < duration:
                if not sent and time.monotonic() - started >= _INBOUND_AFTER_SECONDS:
                    sent = True
                    for line in _send_interests(inbound.api):
                        console.print(f"[bold]inbound[/] {line}", soft_wrap=True)
                for message in consumer.consume(500, timeout=0.25):
                    if message.error() is not None:
                        continue
                    headers = message.headers()
                    topic = message.topic()
                    if topic == topics.invalid_events:
                        tally.invalid[header_value(headers, "qi.error.reason") or "?"] += 1
                    elif topic == topics.delivery_records:
                        tally.add_delivery(message.value())
                    elif topic in (topics.bookmarks, topics.match_review):
                        record = tally.add_inbound(topic, topics, message.value())
                        curl = None
                        if topic == topics.match_review:
                            curl = _resolve_curl(inbound.api, record, inbound.token)
                        if curl is not None:
                            console.print(
                                f"[bold]review[/] {record.get('review_id')} waits for a tenant"
                                f" admin: resolve it in the console ({inbound.console_url})"
                                " or through the API:\n"
                                f"  {curl}",
                                soft_wrap=True,
                            )
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
        f" {sum(tally.invalid.values())} invalid events,"
        f" {sum(tally.bookmarks.values())} bookmarks, {len(tally.reviews)} waiting for review"
    )
    return 0
