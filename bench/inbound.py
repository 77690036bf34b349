"""Intake latency of partner webhooks at a fixed rate, next to a bare endpoint that only verifies.

One API process (uvicorn, a child of this one) serves both, over the run's Redis and Kafka:

- ``POST /webhooks/hmactest/{tenant}``: the real intake (connection lookup, IP allowlist,
  signature, parse, Redis reserve and confirm, produce to ``integrations.inbound`` and wait for
  Kafka's acknowledgement), each request a new signed event, so each is answered
  ``202 {"accepted": 1}``;
- ``POST /bench/bare/{tenant}``: the baseline, added by this benchmark only: the same
  signature check with the secret already in memory, then 202; no Redis, no Kafka.

Each phase sends ``--rate`` requests a second (open loop: a request's start time is fixed in
advance, so a slow answer does not slow the sender) for ``--seconds``, after a short warm-up,
and records each request's latency; only 202 answers count, others are reported. The
connector is the test-only ``hmactest`` (:mod:`tests.support.inbound`: HMAC-SHA256 over method,
URL and body), since the intake's cost does not depend on which adapter verifies.

Results: ``bench/results/inbound.json``. ``python -m bench.inbound serve`` is the child.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import aiohttp
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from fastapi import Request, Response
from pydantic import SecretStr

from bench._kit import (
    BenchRun,
    free_port,
    parser,
    percentile,
    ratio,
    start_server,
    stop_worker,
    store_connection,
    write_results,
)
from connectors.base.inbound import InboundAuthError, InboundRequest
from connectors.registry import extended
from processors.api import create_api
from processors.settings import Settings
from tests.support.inbound import NAME, SPEC, HmacInbound, HmacTestAdapter, events_body, sign

BASE = "https://hooks.bench.example"
SECRET = "bench-inbound-secret-0e7d"
TENANT = "t_bench_in"
WARMUP_SECONDS = 1.0
CONNECTIONS = 32
"""Keep-alive connections of the sender (a partner's webhook sender holds a few)."""


def _serve(port: int) -> None:
    """The child: the API with the test connector and the bare endpoint, until terminated."""
    settings = Settings()
    adapter = HmacTestAdapter()
    block = HmacInbound(enabled=True, secret=SecretStr(SECRET))
    with extended(SPEC):
        app = create_api(settings)

        @app.post("/bench/bare/{tenant_id}", status_code=202, include_in_schema=False)
        async def bare(tenant_id: str, request: Request) -> Response:
            body = await request.body()
            inbound = InboundRequest(
                method=request.method,
                url=BASE + request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                received_at=time.time(),
            )
            try:
                adapter.verify(inbound, block)
            except InboundAuthError:
                return Response(status_code=401)
            return Response(b'{"accepted":1,"duplicates":0}', status_code=202)

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _phase(
    session: aiohttp.ClientSession, url: str, path: str, *, rate: float, seconds: float
) -> dict[str, Any]:
    """Send signed single-event requests at ``rate`` for ``seconds`` (after the warm-up)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int((WARMUP_SECONDS + seconds) * rate)
    warmup = int(WARMUP_SECONDS * rate)
    requests = []
    for _ in range(total):  # prepared beforehand: the sender only sends
        body = events_body(f"ev-{uuid.uuid4().hex}")
        requests.append((body, {"X-Test-Signature": sign(SECRET, "POST", BASE + path, body)}))

    async def one(n: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        body, headers = requests[n]
        started = time.perf_counter()
        async with session.post(url + path, data=body, headers=headers) as answer:
            await answer.read()
        elapsed = time.perf_counter() - started
        if n >= warmup:
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status == 202:
                latencies.append(elapsed)

    start = time.perf_counter() + 0.1
    await asyncio.gather(*(one(n, start + n / rate) for n in range(total)))
    latencies.sort()
    answered = len(latencies)
    return {
        "requests": total - warmup,
        "answered_202": answered,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2) if answered else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if answered else None,
        "max_ms": round(latencies[-1] * 1000, 2) if answered else None,
    }


def _produced(run: BenchRun) -> int:
    consumer = Consumer({"bootstrap.servers": run.kafka.bootstrap_servers, "group.id": "bench-x"})
    try:
        total = 0
        for partition in range(run.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(run.topics.inbound, partition), timeout=10
            )
            total += high - low
        return total
    finally:
        consumer.close()


async def _measure(run: BenchRun, rate: float, seconds: float) -> dict[str, Any]:
    async with run.connections() as repository:
        settings = Settings()
        with extended(SPEC):
            await store_connection(
                repository,
                settings.secrets.secret_box(),
                TENANT,
                NAME,
                {"inbound": {"enabled": True, "secret": SECRET}},
            )
    port = free_port()
    server = start_server(
        ["bench.inbound", "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}/healthz",
        name="the API",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            bare = await _phase(session, url, f"/bench/bare/{TENANT}", rate=rate, seconds=seconds)
            intake = await _phase(
                session, url, f"/webhooks/{NAME}/{TENANT}", rate=rate, seconds=seconds
            )
    finally:
        stop_worker(server)
    produced = _produced(run)
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "bare_verify_only": bare,
        "intake": intake,
        "records_on_integrations_inbound": produced,
        "p50_ratio": ratio(intake["p50_ms"], bare["p50_ms"])
        if intake["p50_ms"] and bare["p50_ms"]
        else None,
        "p99_ratio": ratio(intake["p99_ms"], bare["p99_ms"])
        if intake["p99_ms"] and bare["p99_ms"]
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(__doc__, prog="python -m bench.inbound")
    sub = args_parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="the API child (internal)")
    serve.add_argument("--port", type=int, required=True)
    args_parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    args_parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase")
    args = args_parser.parse_args(argv)
    if args.command == "serve":
        _serve(args.port)
        return 0
    with BenchRun("bin", 4) as run:
        os.environ.update(
            {
                "QI_KAFKA_BOOTSTRAP_SERVERS": run.kafka.bootstrap_servers,
                "QI_REDIS_URL": run.redis.url,
                "QI_REDIS_KEY_PREFIX": run.redis.key_prefix,
                "QI_TOPIC_PREFIX": run.topic_settings.prefix,
                "QI_PUBLIC_BASE_URL": BASE,
                "QI_ENV": "development",
            }
        )
        result = asyncio.run(_measure(run, args.rate, args.seconds))
    write_results("inbound", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
