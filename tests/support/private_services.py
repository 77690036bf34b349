"""Private Kafka and Redis instances for tests that stop, restart or flush them.

The shared services (the broker on 9092, Redis on 6379) must never be stopped or flushed by a
test, so the fault suite runs its own: ``deploy/local/kafka.sh`` and ``deploy/local/redis.sh``
pointed at a temporary state directory and free ports (``QI_LOCAL_STATE_DIR``,
``QI_LOCAL_KAFKA_PORT``, ``QI_LOCAL_KAFKA_CONTROLLER_PORT``, ``QI_LOCAL_REDIS_PORT``). Each
instance is started once, can be stopped and started again on the same ports and data (the
broker keeps its KRaft log, Redis its AOF), and is stopped for good by :meth:`close`, after
which its state directory can be deleted.

The broker's jars come from the repository's own ``.local/`` when ``make up`` resolved them
there already (linked, not copied); otherwise ``kafka.sh`` resolves them with Maven as usual.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redis

from tests.support.infrastructure import REPO_ROOT
from tests.support.worker import free_port

__all__ = ["PrivateKafka", "PrivateRedis"]

_KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.1.1")
_SCRIPT_TIMEOUT_S = 600


def _run(script: str, command: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "deploy/local" / script), command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        msg = f"{script} {command} failed ({result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)


class PrivateKafka:
    """A single-node KRaft broker of this test session only."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.controller_port = free_port()
        self._env = {
            "QI_LOCAL_STATE_DIR": str(state_dir),
            "QI_LOCAL_KAFKA_PORT": str(self.port),
            "QI_LOCAL_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "QI_LOCAL_KAFKA_HEAP": "-Xms256m -Xmx512m",
        }
        self._link_cached_jars()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _link_cached_jars(self) -> None:
        dist = f"kafka-{_KAFKA_VERSION}"
        cached = REPO_ROOT / ".local" / dist
        target = self.state_dir / dist
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if (cached / "libs" / ".complete").is_file() and not target.exists():
            target.symlink_to(cached, target_is_directory=True)

    def start(self) -> None:
        """Start (or start again, on the same ports and data) and wait until it answers."""
        _run("kafka.sh", "start", self._env)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s); its data stays."""
        _run("kafka.sh", "stop", self._env)

    def close(self) -> None:
        self.stop()


class PrivateRedis:
    """A Redis of this test session only (AOF persistence, as deployed)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self._env = {
            "QI_LOCAL_STATE_DIR": str(state_dir),
            "QI_LOCAL_REDIS_PORT": str(self.port),
        }

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        _run("redis.sh", "start", self._env)

    def stop(self) -> None:
        """Shut down (the AOF is flushed, so a restart comes back with the data)."""
        _run("redis.sh", "stop", self._env)

    def flushall(self) -> None:
        """Lose every key, as a Redis restarted without its AOF would."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def close(self) -> None:
        self.stop()
