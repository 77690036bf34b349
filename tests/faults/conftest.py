"""Fixtures of the fault suite: a run's topics, keys, workers and configuration.

Scenarios that only kill workers or misbehave at the HTTP level use the shared broker and
Redis (``shared_run``), under their own topic and key prefix and consumer group. Scenarios that
stop, restart or flush the broker or Redis use the session's private instances
(``private_run``; see :mod:`tests.support.private_services`), started once for the suite and
deleted at its end. Every topic whose name starts with the run's id, its consumer group and
every Redis key under its prefix are deleted when the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient

from processors.kafka import ensure_topics
from processors.samples import to_json_line
from processors.settings import KafkaSettings, TopicSettings
from processors.topics import TopicMap
from tests.integration.partners import FAST_RETRIES
from tests.sandboxes.webhook_receiver import ReceiverServer, generate_secret
from tests.support.accounting import Accounting, Receipt, account
from tests.support.infrastructure import Infrastructure, infrastructure
from tests.support.kafka_io import produce
from tests.support.private_services import PrivateKafka, PrivateRedis
from tests.support.seeding import seed_webhooks
from tests.support.worker import WorkerProcess, free_port

PARTITIONS = 6

FAULT_ENV = {
    **FAST_RETRIES,
    "QI_ENV": "development",
    "QI_DELIVERY_DEFER_MIN_SECONDS": "0.5",
    "QI_DELIVERY_DEFER_MAX_SECONDS": "2",
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
}
"""Quick retries and deferrals; ``QI_ENV`` because the suite seals with the development key.

Faust's own ``BROKER_SESSION_TIMEOUT`` (60 s by default) is how long the partitions of a
SIGKILLed worker wait before the group hands them to another member; 10 s keeps five kills
within the suite's time without changing what is tested."""


@dataclass(frozen=True, slots=True)
class PrivateServices:
    kafka: PrivateKafka
    redis: PrivateRedis


@dataclass
class FaultRun:
    """One scenario's namespace on a broker and a Redis, and the workers it started."""

    test_id: str
    bootstrap_servers: str
    redis_url: str
    tmp_path: Path
    topics: TopicMap
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, **overrides: str) -> WorkerProcess:
        """A new worker in the run's group, with its own metrics port and log file."""
        env = {**self.env, "QI_METRICS_PORT": str(free_port()), **overrides}
        worker = WorkerProcess(env, self.tmp_path / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def publish(self, events: Iterable[Mapping[str, Any]]) -> None:
        produce(
            self.bootstrap_servers,
            self.topics.domain_events,
            ((str(e["tenant_id"]).encode(), to_json_line(dict(e))) for e in events),
        )

    def seed(self, endpoints: Mapping[str, tuple[str, str]], **options: int) -> None:
        """Configure one webhook connection per tenant with ``connections seed``."""
        seed_webhooks(self.env, self.tmp_path / "seed.json", endpoints, **options)

    def account(
        self,
        published: list[dict[str, Any]],
        receipts: Iterable[Receipt],
        name: str,
        **options: Any,
    ) -> Accounting:
        """Run the accounting; its figures go to ``accounting-<name>.json`` in the test's tmp
        dir (and, when ``QI_FAULTS_REPORT`` names a file, appended to it as one JSON line)."""
        result = account(
            bootstrap_servers=self.bootstrap_servers,
            topics=self.topics,
            partitions=PARTITIONS,
            published=published,
            receipts=receipts,
            **options,
        )
        result.write(self.tmp_path / f"accounting-{name}.json")
        report = os.environ.get("QI_FAULTS_REPORT")
        if report:
            with Path(report).open("a") as out:
                out.write(json.dumps({"scenario": name, **result.summary}) + "\n")
        return result

    def logs(self) -> str:
        return "".join(w.log_path.read_text(errors="replace") for w in self.workers)


def receiver_endpoints(
    receiver: ReceiverServer, tenants: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """Each tenant's endpoint on ``receiver``, with a fresh secret the receiver verifies."""
    endpoints = {}
    for tenant in tenants:
        secret = generate_secret()
        receiver.set_secret(tenant, secret)
        endpoints[tenant] = (receiver.endpoint_url(tenant), secret)
    return endpoints


def wait_for(condition: Callable[[], bool], within: float, interval: float = 0.25) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds pass; whether it held."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def wait_for_count(
    count: Callable[[], int], target: int, *, within: float, stall: float = 30.0
) -> int:
    """Poll ``count`` until it reaches ``target``, ``within`` seconds pass, or it has not grown
    for ``stall`` seconds (a stuck run fails fast); the last count."""
    deadline = time.monotonic() + within
    last, grew_at = count(), time.monotonic()
    while last < target and time.monotonic() < deadline and time.monotonic() - grew_at < stall:
        time.sleep(0.5)
        now = count()
        if now > last:
            last, grew_at = now, time.monotonic()
    return last


def delivered_keys(receiver: ReceiverServer) -> set[str]:
    """Webhook ids the receiver answered 2xx, on every endpoint."""
    return {
        d.webhook_id
        for deliveries in receiver.all_received().values()
        for d in deliveries
        if d.delivered and d.webhook_id is not None
    }


def _delete_group(admin: AdminClient, group: str) -> None:
    """Delete the run's consumer group; a SIGKILLed member keeps it non-empty until its
    session times out, so that answer is retried for a while."""
    deadline = time.monotonic() + 30
    while True:
        future = admin.delete_consumer_groups([group], request_timeout=30)[group]
        try:
            future.result()
            return
        except Exception as exc:
            if "GROUP_ID_NOT_FOUND" in str(exc):  # no worker ever joined
                return
            if "NON_EMPTY_GROUP" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(1)


def _cleanup(run: FaultRun) -> None:
    admin = AdminClient({"bootstrap.servers": run.bootstrap_servers})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(run.test_id)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
    _delete_group(admin, run.test_id)
    client = redis.Redis.from_url(run.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{run.test_id}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@contextmanager
def _fault_run(
    bootstrap_servers: str,
    redis_url: str,
    tmp_path: Path,
    before_cleanup: Callable[[], None] | None = None,
) -> Iterator[FaultRun]:
    test_id = f"ft{uuid.uuid4().hex[:10]}"
    topics = TopicMap(f"{test_id}.")
    ensure_topics(
        KafkaSettings(bootstrap_servers=bootstrap_servers),
        TopicSettings(prefix=topics.prefix, partitions=PARTITIONS),
        topics.all_specs(),
    )
    env = {
        "QI_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "QI_REDIS_URL": redis_url,
        "QI_REDIS_KEY_PREFIX": f"{test_id}:",
        "QI_TOPIC_PREFIX": topics.prefix,
        "QI_TOPIC_PARTITIONS": str(PARTITIONS),
        "QI_WORKER_APP_ID": test_id,
        **FAULT_ENV,
    }
    run = FaultRun(test_id, bootstrap_servers, redis_url, tmp_path, topics, env)
    try:
        yield run
    finally:
        for worker in run.workers:
            worker.stop(timeout=15)  # a worker stuck on a fault need not be waited out
        if before_cleanup is not None:
            before_cleanup()
        _cleanup(run)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    with infrastructure() as resolved:
        yield resolved


@pytest.fixture(scope="session")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    """A broker and a Redis of this session only, on free ports; deleted at the end."""
    state = tmp_path_factory.mktemp("private-services")
    kafka, cache = PrivateKafka(state), PrivateRedis(state)
    try:
        kafka.start()
        cache.start()
        yield PrivateServices(kafka, cache)
    finally:
        try:
            cache.close()
        finally:
            kafka.close()
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def shared_run(infra: Infrastructure, tmp_path: Path) -> Iterator[FaultRun]:
    with _fault_run(infra.bootstrap_servers, infra.redis_url, tmp_path) as run:
        yield run


@pytest.fixture
def private_run(private_services: PrivateServices, tmp_path: Path) -> Iterator[FaultRun]:
    """A run on the private services; whatever a scenario stopped is running again after."""

    def restart() -> None:
        private_services.kafka.start()
        private_services.redis.start()

    with _fault_run(
        private_services.kafka.bootstrap_servers, private_services.redis.url, tmp_path, restart
    ) as run:
        yield run


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server
