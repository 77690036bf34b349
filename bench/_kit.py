"""What every benchmark shares: its run's services and prefixes, the worker, publishing, results.

A benchmark in ``bench/`` measures the real code against a baseline of the same run on the
same machine and reports both absolute figures and their ratio. This module is the scaffolding
they have in common, so each benchmark module holds only what it measures:

- :func:`parser`: the argument parser, described by the first line of the module docstring;
- :class:`BenchRun`: one run's identity on the shared Kafka and Redis (the addresses come from
  ``QI_KAFKA_BOOTSTRAP_SERVERS`` and ``QI_REDIS_URL``, defaulting to the local services): a
  run id that prefixes its topics (``{run_id}.``), Redis keys (``{run_id}:``) and consumer
  groups (``{run_id}``), the worker environment that points at them, and
  ``with BenchRun(...)``, which creates the run's topics and deletes all three at the end;
- :func:`start_worker` / :func:`stop_worker`: ``python -m processors worker`` as a child;
  :func:`start_server` a loopback server child, returned once its probe URL answers;
  ``with webhook_receiver(...)`` (:func:`webhook_receiver`) the Standard Webhooks receiver
  sandbox as such a child, ended at the end of the block;
- :func:`topic_reader`: a consumer that reads a topic from its start in a group of its own
  (the delivery records a benchmark counts outcomes from);
- :func:`publish`: domain events to a topic, all at once or at a fixed rate, with the wall
  time each event id was handed to the producer (for publish-to-receiver latencies);
- :func:`store_connection`: a tenant's connection stored as the API would (settings sealed);
- :func:`ratio`, :func:`percentile`, :func:`wait_for_progress`: the figures and waits;
- :func:`write_results`: ``bench/results/<name>.json`` with the machine, Python and date
  stamped on, the figures other runs are compared with.

Decisions: consumer groups a benchmark opens itself are named ``bench-…`` (outside the run's
prefix) by the modules that predate this kit, as the results they compare with were measured
that way; those groups are empty after the run and expire on the broker.

Benchmarks run in development mode (``QI_ENV=development``, as ``make bench-*`` sets it): their
workers and stored connections use the development secrets key, which any other mode refuses,
so importing this module sets ``QI_ENV`` when the environment does not, and ``python -m
bench.<name>`` works on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
from confluent_kafka import Consumer, Producer
from redis.asyncio import Redis

from processors.kafka import ensure_topics
from processors.samples import to_json_line
from processors.secrets import SecretBox
from processors.settings import KafkaSettings, RedisSettings, TopicSettings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings
from processors.topics import TopicFamily, TopicMap, TopicSpec
from tests.support.hygiene import remove_prefix
from tests.support.lifecycle import StartStop, end_process

os.environ.setdefault("QI_ENV", "development")
from tests.support.worker import free_port

__all__ = [
    "REPO",
    "RESULTS_DIR",
    "BenchRun",
    "free_port",
    "parser",
    "percentile",
    "publish",
    "ratio",
    "start_server",
    "start_worker",
    "stop_worker",
    "store_connection",
    "topic_reader",
    "wait_for_progress",
    "webhook_receiver",
    "write_results",
]

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"


def parser(doc: str | None, *, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser described by the first line of a benchmark's docstring."""
    return argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n", 1)[0])


@dataclass(slots=True)
class BenchRun(StartStop):
    """One benchmark run's prefixes on the shared Kafka and Redis.

    ``with BenchRun("bd", 8) as run:`` creates the run's topics (every family of the topic
    map, plus ``extra_topics``, named under the prefix) and deletes its topics, keys and
    consumer groups on the way out. ``tag`` is a short name of the benchmark: the run id is
    the tag and eight hex digits, so two runs (or a run and a test) never share a name.
    """

    tag: str
    partitions: int
    extra_topics: tuple[str, ...] = ()
    run_id: str = field(init=False)
    kafka: KafkaSettings = field(init=False)
    redis: RedisSettings = field(init=False)
    topic_settings: TopicSettings = field(init=False)
    topics: TopicMap = field(init=False)

    def __post_init__(self) -> None:
        self.run_id = f"{self.tag}{uuid.uuid4().hex[:8]}"
        self.kafka = KafkaSettings(
            bootstrap_servers=os.environ.get("QI_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        )
        self.redis = RedisSettings(
            url=os.environ.get("QI_REDIS_URL", "redis://127.0.0.1:6379/0"),
            key_prefix=f"{self.run_id}:",
        )
        self.topic_settings = TopicSettings(prefix=f"{self.run_id}.", partitions=self.partitions)
        self.topics = TopicMap(self.topic_settings.prefix)

    def topic(self, name: str) -> str:
        """``name`` under the run's topic prefix."""
        return f"{self.topic_settings.prefix}{name}"

    def start(self) -> Self:
        """Create the run's topics (what was created is removed again if that fails)."""
        extra = [TopicSpec(self.topic(name), TopicFamily.EXPORTS) for name in self.extra_topics]
        try:
            ensure_topics(self.kafka, self.topic_settings, [*self.topics.all_specs(), *extra])
        except BaseException:
            self.stop()
            raise
        return self

    def worker_env(self, **settings: str) -> dict[str, str]:
        """The ``QI_*`` settings of a worker on this run's prefixes, plus ``settings``
        (``QI_X="1"``); metrics on an ephemeral port. The caller adds ``os.environ``."""
        return {
            "QI_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "QI_REDIS_URL": self.redis.url,
            "QI_REDIS_KEY_PREFIX": self.redis.key_prefix,
            "QI_TOPIC_PREFIX": self.topic_settings.prefix,
            "QI_TOPIC_PARTITIONS": str(self.partitions),
            "QI_WORKER_APP_ID": self.run_id,
            "QI_METRICS_PORT": "0",
            **settings,
        }

    @asynccontextmanager
    async def connections(self) -> AsyncIterator[ConnectionRepository]:
        """The connection repository on the run's Redis key prefix, closed on exit."""
        client = Redis.from_url(self.redis.url)
        try:
            yield ConnectionRepository(client, key_prefix=self.redis.key_prefix)
        finally:
            await client.aclose()

    def stop(self) -> None:
        """Delete the run's topics, keys and consumer groups; say on stderr what is left."""
        left = remove_prefix(
            bootstrap_servers=self.kafka.bootstrap_servers,
            redis_url=self.redis.url,
            topic_prefix=self.topic_settings.prefix,
            key_prefix=self.redis.key_prefix,
            group_prefix=self.run_id,
        )
        if left:
            print(f"left behind: {left}", file=sys.stderr)


def start_worker(
    env: Mapping[str, str], *, command: Sequence[str] = ("processors", "worker")
) -> subprocess.Popen[bytes]:
    """``python -m processors worker`` (or ``python -m`` ``command``) with ``os.environ`` and
    ``env``, output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", *command, "--loglevel", "warning"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_worker(worker: subprocess.Popen[bytes] | None, *, timeout: float = 30.0) -> None:
    """SIGTERM the worker and wait for it (SIGKILL after ``timeout``)."""
    end_process(worker, timeout=timeout)


def start_server(
    args: Sequence[str], probe: str, *, within: float = 20.0, name: str = "the server"
) -> subprocess.Popen[bytes]:
    """``python -m args…`` in the repository, returned once ``GET probe`` answers at all."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(probe, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.2)
        else:
            return process
    process.kill()
    raise RuntimeError(f"{name} did not start")


@contextmanager
def webhook_receiver(port: int, secret: str) -> Iterator[subprocess.Popen[bytes]]:
    """The webhook receiver sandbox (``tests/sandboxes/webhook_receiver.py``) on ``port``,
    checking signatures with ``secret``, running (it answers) inside the block and ended
    on the way out."""
    receiver = start_server(
        ["tests.sandboxes.webhook_receiver", "--port", str(port), "--secret", secret],
        f"http://127.0.0.1:{port}/_control/received",
        name="receiver",
    )
    try:
        yield receiver
    finally:
        end_process(receiver)


def topic_reader(kafka: KafkaSettings, topic: str) -> Consumer:
    """A consumer subscribed to ``topic`` from its earliest offset, in a fresh ``bench-…``
    group (see the module docstring); the caller closes it."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    return consumer


def publish(
    client: Producer, topic: str, events: Iterable[dict[str, Any]], *, rate: float | None = None
) -> dict[str, float]:
    """Produce ``events`` keyed by tenant, all at once or ``rate`` a second, then flush.

    Returns the wall time (``time.time()``) each event id was handed to the producer.
    """
    sent: dict[str, float] = {}
    started = time.time()
    for n, event in enumerate(events):
        if rate:
            pause = started + n / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        sent[event["event_id"]] = time.time()
        while True:
            try:
                client.produce(topic, key=event["tenant_id"].encode(), value=to_json_line(event))
                break
            except BufferError:
                client.poll(0.05)
        client.poll(0)
    client.flush(120)
    return sent


async def store_connection(
    repository: ConnectionRepository,
    box: SecretBox | None,
    tenant: str,
    connector: str,
    block: Mapping[str, Any] | None = None,
    **record_fields: str,
) -> ConnectionRecord:
    """Allow ``tenant`` and store its ``conn_<tenant>`` connection, ``block`` sealed with ``box``
    (``record_fields``: more fields of the record, such as ``delivery_mode``)."""
    connection = ConnectionRecord.model_validate(
        {
            "tenant_id": tenant,
            "connector": connector,
            "connection_id": f"conn_{tenant}",
            **record_fields,
        }
    )
    if block is not None and box is not None:
        sealed = seal_settings(
            dict(block), box=box, tenant_id=tenant, connection_id=connection.connection_id
        )
        connection = connection.model_copy(update={"settings": sealed})
    await repository.allow(tenant)
    await repository.put(connection)
    return connection


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline`` to three decimals (1.0: as good as the baseline)."""
    return round(ours / baseline, 3)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank below."""
    return values[min(len(values) - 1, int(q * len(values)))]


def wait_for_progress(
    progress: Callable[[], int],
    target: int,
    *,
    timeout: float,
    stalled_after: float,
    interval: float,
) -> bool:
    """Poll ``progress()`` until it reaches ``target`` (True), ``timeout`` passes or it has
    not moved for ``stalled_after`` seconds (False: reported, not hidden)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = progress()
        if done >= target:
            return True
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stalled_after:
            return False
        time.sleep(interval)
    return False


def write_results(
    name: str, result: dict[str, Any], *, key: str | None = None, echo: bool = True
) -> None:
    """Stamp ``result`` with the machine, Python and date, and write it to
    ``bench/results/<name>.json`` (under ``key`` when given, keeping the other keys).
    ``echo`` prints it as written."""
    result["machine"] = f"{platform.machine()}, {os.cpu_count() or 1} cores"
    result["python"] = platform.python_version()
    result["date"] = time.strftime("%Y-%m-%d")
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    stored: dict[str, Any] = result
    if key is not None:
        stored = json.loads(path.read_text()) if path.exists() else {}
        stored[key] = result
    path.write_text(json.dumps(stored, indent=2) + "\n")
    if echo:
        print(json.dumps(result, indent=2))
