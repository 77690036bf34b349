"""HubSpot at its burst limit: records/s the real worker writes, against what the limit allows.

Every tenant has a HubSpot connection to its own sandbox portal (``tests/sandboxes/hubspot.py``,
served in its own process so the benchmark does not share its interpreter lock) limited like a
Free/Starter private app: 100 requests per rolling 10 s (search excluded), 5 searches per
second. The ceiling is 100 requests per 10 s x 100 records = 1,000 records/s per portal.

- **baseline**: a bare client in this process, one batch upsert of 100 new companies at a time,
  paced at the limit (one request per 100.5 ms) against a portal of its own: what the sandbox
  and the limit allow a client that does nothing else;
- **first links**: ``--companies`` companies per tenant, none linked yet: the worker looks them
  up (``IN`` searches shared by the connection's lanes) and links or creates them. A quarter
  exist in the portal already (by domain, by LinkedIn page or by name only), so that lookups
  link them. Bounded by the search limit, not the burst limit: reported with the lookups
  per search request;
- **updates**: ``--versions`` newer versions of the same companies, all linked: batch updates
  by record id, the steady state of a live stream.

Each phase's events are published at once (``--publish-factor F``: the updates at F times the
ceiling in events/s instead) before the worker, started once, works through them. Records/s
are counted on the sandbox (inputs of answered batch writes), per portal, over the steady
state of each phase (from 10 % to 90 % of the phase's records written), and summed over the
portals; with them, the write requests/s (the limit allows 10) and the records per write,
which tell the limiter's share from the lanes'. Also reported: requests answered 429 (share
of all), searches, the worker's CPU share per phase, and the outcomes of the deliveries.

The worker runs with batches of 100 and the engine's default lanes (``--lane-capacity``
200 records; each of a connection's 4 queues holds at least ``QI_DELIVERY_LANE_BATCHES`` =
10 full batches). With queues of 50 (before that floor) a write carried at most 50 records,
half the ceiling, and a backlog was deferred record by record to the retry topic.

Results are printed and written to ``bench/results/hubspot_rate.json``; the run's topics and
keys are deleted at the end.
Run: ``make bench-hubspot`` (``python -m bench.hubspot_rate --tenants 1 --versions 8``; more
tenants share one worker process, which runs short of CPU on 2 cores before HubSpot's limits).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from bench import _kit as kit
from bench._kit import BenchRun, store_connection
from processors.kafka import producer
from processors.secrets import SecretsSettings
from processors.settings import KafkaSettings
from tests.sandboxes._server import listen, serve_until_interrupted, uvicorn_server
from tests.sandboxes.hubspot import PortalLimits, SandboxApp, SandboxState

PARTITIONS = 8
BURST_MAX = 100
INTERVAL_S = 10.0
BATCH = 100
SEARCHES_PER_SECOND = 5
CEILING_PER_PORTAL = BURST_MAX / INTERVAL_S * BATCH
BASELINE_PORTAL = 999
TERMINAL = {"delivered", "dead_lettered", "stale_skipped", "duplicate_skipped", "held_for_review"}
_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
_SUFFIXES = ("Inc", "GmbH", "Ltd", "AB", "Oy", "SAS")


# -- the sandbox in its own process ------------------------------------------------------------


def serve_sandbox(port: int) -> None:
    """The HubSpot sandbox plus ``GET /_bench/requests/{portal}`` (its request log)."""
    state = SandboxState()
    sandbox = SandboxApp(state)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/_bench/requests/"):
            entries = state.requests(int(path.rsplit("/", 1)[1]))
            body = json.dumps([e.model_dump() for e in entries]).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await sandbox(scope, receive, send)

    sock = listen("127.0.0.1", port)
    serve_until_interrupted(uvicorn_server(app, configure_logging=True, log_level="warning"), sock)


def _start_sandbox(port: int) -> subprocess.Popen[bytes]:
    return kit.start_server(
        ["bench.hubspot_rate", "--serve-sandbox", str(port)],
        f"http://127.0.0.1:{port}/_bench/requests/0",
        within=30,
        name="the HubSpot sandbox",
    )


def _add_portal(url: str, portal: int, token: str) -> None:
    limits = PortalLimits(
        burst_max=BURST_MAX,
        interval_ms=int(INTERVAL_S * 1000),
        search_per_second=SEARCHES_PER_SECOND,
        daily=None,
    )
    body = {"portal_id": portal, "private_app_token": token, "limits": limits.model_dump()}
    httpx.post(f"{url}/_control/portals", json=body, timeout=10).raise_for_status()


def _requests(url: str, portal: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/_bench/requests/{portal}", timeout=120)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


# -- the data ------------------------------------------------------------------------------------


def _company(tenant: str, index: int, version: int) -> dict[str, Any]:
    word = _WORDS[index % len(_WORDS)]
    domain = f"{word.lower()}{index}-{tenant.replace('_', '-')}.com"
    return {
        "company_id": f"co_{index}",
        "name": f"{word} {index} {_SUFFIXES[index % len(_SUFFIXES)]}",
        "domain": domain,
        "domains": [domain],
        "website": f"https://www.{domain}/",
        "linkedin_url": f"https://www.linkedin.com/company/{word.lower()}-{index}",
        "employee_count": 10 + index % 500,
        "country": ("SE", "FI", "DE", "US")[index % 4],
        "version": version,
    }


def _seeded(tenant: str, index: int) -> dict[str, str] | None:
    """The company as the portal already has it, for some: by domain, LinkedIn page or name."""
    data = _company(tenant, index, 1)
    if index % 10 == 0:
        return {"name": f"{data['name']} (CRM)", "domain": data["domain"]}
    if index % 10 == 5:
        return {"name": "Someone else's label", "linkedin_company_page": data["linkedin_url"]}
    if index % 20 == 7:
        return {"name": data["name"], "domain": f"legacy-{data['domain']}"}
    return None


def _events(tenants: Sequence[str], companies: int, versions: range) -> list[dict[str, Any]]:
    """Version by version, tenants interleaved."""
    events = []
    for version in versions:
        for index in range(companies):
            for tenant in tenants:
                events.append(
                    {
                        "event_id": str(uuid.uuid4()),
                        "event_type": "company.upserted",
                        "schema_version": "1.0",
                        "tenant_id": tenant,
                        "occurred_at": "2026-11-26T05:00:00Z",
                        "data": _company(tenant, index, version),
                    }
                )
    return events


async def _seed_connections(
    run: BenchRun, url: str, tenants: Sequence[str], companies: int
) -> dict[str, int]:
    box = SecretsSettings().secret_box()
    portals: dict[str, int] = {}
    async with run.connections() as repository, httpx.AsyncClient(timeout=30) as http:
        for number, tenant in enumerate(tenants, start=1):
            token = f"pat-bench-{tenant}"
            portals[tenant] = number
            _add_portal(url, number, token)
            for index in range(companies):
                seeded = _seeded(tenant, index)
                if seeded is not None:
                    await http.post(
                        f"{url}/_control/portals/{number}/objects/companies",
                        json={"properties": seeded},
                    )
            block = {"auth": {"type": "private_app", "token": token}}
            await store_connection(repository, box, tenant, "hubspot", block)
    return portals


# -- the baseline ------------------------------------------------------------------------------


def _baseline(url: str, seconds: float) -> dict[str, Any]:
    """Batch upserts of 100 new companies, one request per 100.5 ms, nothing else."""
    token = "pat-bench-baseline"
    _add_portal(url, BASELINE_PORTAL, token)
    spacing = INTERVAL_S / BURST_MAX * 1.005
    headers = {"authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    written = 0
    with httpx.Client(headers=headers, timeout=30) as client:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            pause = started + n * spacing - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            inputs = [
                {
                    "id": f"base_{n}_{i}",
                    "idProperty": "queast_id",
                    "properties": {"name": f"Base {n} {i}", "domain": f"b{n}-{i}.com"},
                }
                for i in range(BATCH)
            ]
            response = client.post(
                f"{url}/crm/v3/objects/companies/batch/upsert", json={"inputs": inputs}
            )
            statuses[response.status_code] += 1
            if response.status_code == 200:
                written += BATCH
            n += 1
        elapsed = time.monotonic() - started
    return {
        "records_per_s": round(written / elapsed),
        "requests": sum(statuses.values()),
        "answered_429": statuses[429],
        "ratio_to_ceiling": round(written / elapsed / CEILING_PER_PORTAL, 3),
    }


# -- the worker and its outcomes -----------------------------------------------------------------


class Outcomes:
    """Delivery records read in a thread: the last status per idempotency key."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._consumer = kit.topic_reader(kafka, topic)
        self.terminal: dict[str, str] = {}
        self.statuses: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, timeout=0.5):
                if message.error() is not None:
                    continue
                record = json.loads(message.value() or b"{}")
                with self._lock:
                    self.statuses[record["status"]] += 1
                    if record["status"] in TERMINAL:
                        self.terminal[record["idempotency_key"]] = record["status"]
        self._consumer.close()

    def settled(self) -> int:
        with self._lock:
            return len(self.terminal)

    def wait(self, count: int, timeout: float) -> bool:
        return kit.wait_for_progress(
            self.settled, count, timeout=timeout, stalled_after=60, interval=0.5
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the figures -------------------------------------------------------------------------------


def _writes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if "/batch/" in e["path"] and e["status"] in (200, 207) and e["method"] == "POST"
    ]


def _steady(writes: list[dict[str, Any]]) -> dict[str, float]:
    """Between 10 % and 90 % of the records written: records/s, write requests/s, records
    per write, and the seconds and records it spans."""
    writes = sorted(writes, key=lambda e: e["at"])
    total = sum(e["inputs"] for e in writes)
    low, high = 0.1 * total, 0.9 * total
    cumulative = 0
    start: float | None = None
    end = 0.0
    records = requests = 0
    for entry in writes:
        before = cumulative
        cumulative += entry["inputs"]
        if start is None:
            if cumulative >= low:
                start = entry["at"]
            continue
        if before < high:
            records += entry["inputs"]
            requests += 1
            end = entry["at"]
    seconds = end - start if start is not None else 0.0
    if seconds <= 0:
        return {"records_per_s": 0.0, "requests_per_s": 0.0, "records_per_write": 0.0}
    return {
        "records_per_s": records / seconds,
        "requests_per_s": requests / seconds,
        "records_per_write": records / max(1, requests),
        "seconds": seconds,
        "records": records,
    }


def _phase(entries: list[dict[str, Any]], since: float, until: float) -> list[dict[str, Any]]:
    return [e for e in entries if since <= e["at"] < until]


def _figures(per_portal: dict[str, list[dict[str, Any]]], companies: int) -> dict[str, Any]:
    steady = {t: _steady(_writes(entries)) for t, entries in per_portal.items()}
    entries = [e for group in per_portal.values() for e in group]
    writes = _writes(entries)
    searches = [e for e in entries if e["path"].endswith("/search")]
    answered = [e for e in searches if e["status"] == 200]
    throttled = sum(1 for e in entries if e["status"] == 429)
    rate = sum(s["records_per_s"] for s in steady.values())
    ceiling = CEILING_PER_PORTAL * len(per_portal)
    figures: dict[str, Any] = {
        "records_written": sum(e["inputs"] for e in writes),
        "steady_records_per_s": round(rate),
        "ceiling_records_per_s": round(ceiling),
        "ratio_to_ceiling": round(rate / ceiling, 3),
        "steady_per_portal": {t: {k: round(v, 1) for k, v in s.items()} for t, s in steady.items()},
        "steady_write_requests_per_s_per_portal_limit": BURST_MAX / INTERVAL_S,
        "requests": len(entries),
        "write_requests": len(writes),
        "records_per_write": round(sum(e["inputs"] for e in writes) / max(1, len(writes)), 1),
        "search_requests": len(searches),
        "answered_429": throttled,
        "share_429": round(throttled / max(1, len(entries)), 5),
    }
    if companies:
        figures["lookup_values_per_search"] = round(
            sum(e["search_values"] for e in answered) / max(1, len(answered)), 1
        )
        figures["first_links_per_search"] = round(
            companies * len(per_portal) / max(1, len(answered)), 1
        )
        figures["search_requests_per_s_per_portal_limit"] = SEARCHES_PER_SECOND
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = kit.parser(__doc__)
    parser.add_argument("--serve-sandbox", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--companies", type=int, default=2000, help="per tenant")
    parser.add_argument("--versions", type=int, default=8, help="update rounds after the first")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--lane-capacity", type=int, default=200)
    parser.add_argument(
        "--publish-factor",
        type=float,
        default=0.0,
        help="publish the updates at this multiple of the ceiling in events/s (0: at once)",
    )
    args = parser.parse_args(argv)
    if args.serve_sandbox is not None:
        serve_sandbox(args.serve_sandbox)
        return 0

    with BenchRun("bh", PARTITIONS) as run:
        result = _measure(args, run)
    kit.write_results("hubspot_rate", result)
    return 0


def _measure(args: argparse.Namespace, run: BenchRun) -> dict[str, Any]:
    kafka, topics = run.kafka, run.topics
    tenants = [f"t_hs_{i}" for i in range(args.tenants)]
    port = kit.free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox = _start_sandbox(port)
    worker: subprocess.Popen[bytes] | None = None
    outcomes: Outcomes | None = None
    result: dict[str, Any] = {
        "run_id": run.run_id,
        "tenants": len(tenants),
        "companies_per_tenant": args.companies,
        "update_rounds": args.versions,
        "limit": f"{BURST_MAX} requests / {INTERVAL_S:g} s per portal, search excluded; "
        f"{SEARCHES_PER_SECOND} searches/s",
        "batch_size": BATCH,
        "lane_capacity": args.lane_capacity,
    }
    try:
        print(f"baseline: a bare client at the limit for {args.baseline_seconds:g} s ...")
        result["baseline"] = _baseline(url, args.baseline_seconds)
        portals = asyncio.run(_seed_connections(run, url, tenants, args.companies))
        seeded = sum(1 for i in range(args.companies) if _seeded(tenants[0], i) is not None)
        result["already_in_portal_per_tenant"] = seeded
        env = run.worker_env(
            QI_WORKER_DELIVERY_CONNECTORS='["hubspot"]',
            QI_HUBSPOT_BASE_URL=url,
            QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
            QI_DELIVERY_LANE_CAPACITY=str(args.lane_capacity),
            QI_DELIVERY_GLOBAL_RATE_PER_SECOND="100000",
            QI_DELIVERY_RETRY_BASE_DELAY_SECONDS="1",
            QI_DELIVERY_RETRY_MAX_DELAY_SECONDS="5",
        )
        outcomes = Outcomes(kafka, topics.delivery_records)
        first = _events(tenants, args.companies, range(1, 2))
        updates = _events(tenants, args.companies, range(2, 2 + args.versions))
        print(f"first links: {len(first):,} events ...", flush=True)
        kit.publish(producer(kafka, **{"linger.ms": 5}), topics.domain_events, first)
        worker = kit.start_worker(env)
        started, cpu = time.time(), 0.0
        settled = outcomes.wait(len(first), 900)
        elapsed, cpu = time.time() - started, _cpu_seconds(worker.pid)
        result["first_links_seconds"] = round(elapsed, 1)
        result["first_links_worker_cpu_share"] = round(cpu / elapsed, 2)
        marks = {t: max([e["at"] for e in _requests(url, p)] or [0.0]) for t, p in portals.items()}
        rate = args.publish_factor * CEILING_PER_PORTAL * len(tenants) or None
        print(f"updates: {len(updates):,} events ...", flush=True)
        started = time.time()
        kit.publish(producer(kafka, **{"linger.ms": 5}), topics.domain_events, updates, rate=rate)
        settled = settled and outcomes.wait(len(first) + len(updates), 900)
        elapsed = time.time() - started
        result["updates_published_per_s"] = round(rate) if rate else "at once"
        result["updates_seconds"] = round(elapsed, 1)
        result["updates_worker_cpu_share"] = round((_cpu_seconds(worker.pid) - cpu) / elapsed, 2)
        result["all_settled"] = settled
        result["outcomes"] = dict(outcomes.statuses)
        result["terminal"] = dict(Counter(outcomes.terminal.values()))
        logs = {t: _requests(url, p) for t, p in portals.items()}
        result["first_links"] = _figures(
            {t: _phase(logs[t], 0.0, marks[t] + 1e-6) for t in tenants}, args.companies
        )
        result["updates"] = _figures(
            {t: _phase(logs[t], marks[t] + 1e-6, float("inf")) for t in tenants}, 0
        )
        everything = [e for log in logs.values() for e in log]
        throttled = sum(1 for e in everything if e["status"] == 429)
        result["answered_429"] = throttled
        result["share_429"] = round(throttled / max(1, len(everything)), 5)
        objects = [
            httpx.get(f"{url}/_control/portals/{p}/objects/companies", timeout=60).json()["results"]
            for p in portals.values()
        ]
        stored = [Counter(o["properties"].get("queast_id") for o in group) for group in objects]
        result["companies_in_portals"] = sum(len(group) for group in objects)
        result["companies_linked_or_created_once"] = all(
            len(c) == args.companies and max(c.values()) == 1 and None not in c for c in stored
        )
        result["targets"] = {
            "records_per_s_at_least_95_percent_of_ceiling": {
                "first_links": result["first_links"]["ratio_to_ceiling"] >= 0.95,
                "updates": result["updates"]["ratio_to_ceiling"] >= 0.95,
            },
            "share_429_below_1_percent": result["share_429"] < 0.01,
        }
    finally:
        kit.stop_worker(worker, timeout=60)
        if outcomes is not None:
            outcomes.close()
        sandbox.terminate()
        sandbox.wait(30)
    return result


if __name__ == "__main__":
    sys.exit(main())
