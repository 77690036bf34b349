"""The real Kafka and Redis the integration tests run against.

Resolution order, as the README says: addresses in the environment
(``QI_KAFKA_BOOTSTRAP_SERVERS`` and ``QI_REDIS_URL``, both set); else testcontainers when a
Docker engine answers; else the project's own ``deploy/local/up.sh`` (Kafka from Maven Central
jars, Debian's redis-server). Whatever is chosen must answer, or the session fails: integration
tests are never skipped for want of infrastructure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Infrastructure:
    bootstrap_servers: str
    redis_url: str
    source: str


def _docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def check(infra: Infrastructure) -> None:
    """Raise with a clear message unless both services answer."""
    admin = AdminClient({"bootstrap.servers": infra.bootstrap_servers})
    try:
        admin.list_topics(timeout=20)
    except Exception as exc:
        msg = f"Kafka at {infra.bootstrap_servers} ({infra.source}) does not answer: {exc}"
        raise RuntimeError(msg) from exc
    client = redis.Redis.from_url(infra.redis_url)
    try:
        client.ping()
    finally:
        client.close()


@contextlib.contextmanager
def _testcontainers() -> Iterator[Infrastructure]:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415
    from testcontainers.redis import RedisContainer  # noqa: PLC0415

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as cache:
        host = cache.get_container_host_ip()
        port = cache.get_exposed_port(6379)
        yield Infrastructure(
            kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "testcontainers"
        )


@contextlib.contextmanager
def infrastructure() -> Iterator[Infrastructure]:
    kafka = os.environ.get("QI_KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("QI_REDIS_URL")
    if kafka and redis_url:
        infra = Infrastructure(kafka, redis_url, "environment")
        check(infra)
        yield infra
        return
    if _docker_engine_answers():
        with _testcontainers() as infra:
            check(infra)
            yield infra
        return
    subprocess.run([str(REPO_ROOT / "deploy/local/up.sh")], check=True, timeout=600)
    infra = Infrastructure("127.0.0.1:9092", "redis://127.0.0.1:6379/0", "deploy/local")
    check(infra)
    yield infra
