"""Redis killed and restarted under a running worker: the agents survive and every export is
delivered. Uses a private ``redis-server`` on its own port and state directory (the shared
Redis is never touched); Kafka and the webhook receiver are the real, shared ones.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from processors.redis_client import redis_client
from processors.samples import sample_events
from processors.settings import RedisSettings, Settings
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS, start_worker
from tests.integration.test_delivery import (
    FAST_RETRIES,
    _applied,
    _connect,
    _expected_keys,
    _publish,
    _wait,
)
from tests.sandboxes.webhook_receiver import ReceiverServer
from tests.support.kafka_io import ConsumedRecord, TopicReader
from tests.support.worker import WorkerProcess, free_port

FINAL = {"delivered", "stale_skipped", "duplicate_skipped"}
"""Outcomes after which an export is done (a newer version already there counts)."""


class PrivateRedis:
    """A ``redis-server`` child process with AOF (fsync on every write) in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is needed (apt-get install redis-server)"
        self._process = subprocess.Popen(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with SyncRedis(port=self.port, socket_connect_timeout=0.5) as client:
                    if client.ping():
                        return
            except (OSError, RedisError):  # not up yet: refused, loading the AOF
                pass
            time.sleep(0.1)
        pytest.fail("the private redis-server did not start")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer() as server:
        yield server


async def test_redis_killed_and_restarted_mid_run_loses_nothing_and_the_worker_lives_on(
    settings: Settings,
    topics: TopicMap,
    qi_env: dict[str, str],
    worker_factory: list[WorkerProcess],
    receiver: ReceiverServer,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    private = settings.model_copy(
        update={"redis": RedisSettings(url=private_redis.url, key_prefix=settings.redis.key_prefix)}
    )
    client = redis_client(private.redis)
    try:
        tenants = [f"t_r{i}" for i in range(4)]
        await _connect(
            ConnectionRepository(client, key_prefix=private.redis.key_prefix),
            private,
            receiver,
            tenants,
            rate=100,
        )
    finally:
        await client.aclose()
    events = sample_events(tenants, 3000, seed=53)
    expected = _expected_keys(events)
    _publish(private, topics, events)
    env = {**qi_env, **FAST_RETRIES, "QI_REDIS_URL": private_redis.url}
    worker = start_worker(worker_factory, env, tmp_path)

    assert await _wait(lambda: len(_applied(receiver, tenants)) >= 300, within=120)
    private_redis.kill()
    at_kill = len(_applied(receiver, tenants))
    assert at_kill < len(expected), "Redis went down mid-run"
    await asyncio.sleep(8)
    assert worker.running
    private_redis.start()

    reader = TopicReader(settings.kafka.bootstrap_servers, [topics.delivery_records], PARTITIONS)

    def outcomes(records: list[ConsumedRecord]) -> dict[str, set[str]]:
        statuses: dict[str, set[str]] = {}
        for record in records:
            document = json.loads(record.value or b"{}")
            statuses.setdefault(document["idempotency_key"], set()).add(document["status"])
        return statuses

    def settled(records: list[ConsumedRecord]) -> bool:
        statuses = outcomes(records)
        return all(statuses.get(key, set()) & FINAL for key in expected)

    records = reader.wait_until(settled, timeout=300, settle=2.0)
    reader.close()
    statuses = outcomes(records)
    unsettled = [key for key in expected if not statuses.get(key, set()) & FINAL]
    assert not unsettled, f"{len(unsettled)} of {len(expected)} exports have no final outcome"
    assert not any("dead_lettered" in s for s in statuses.values())
    applied = _applied(receiver, tenants)
    delivered = {key for key, s in statuses.items() if "delivered" in s}
    assert delivered == set(applied), "the receiver got exactly what the records say"
    assert set(applied) <= expected
    assert worker.running, "the worker outlived the outage"
    assert "delivery.batch.retrying" in worker.log_path.read_text(), "the outage was met"
    skipped = len(expected) - len(delivered)
    duplicates = sum(applied.values()) - len(applied)
    print(
        f"Redis killed at {at_kill} delivered; {len(expected)} exports: {len(delivered)}"
        f" delivered, {skipped} skipped as stale, {duplicates} sent twice"
    )
