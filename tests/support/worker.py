"""The real worker as a child process (``python -m processors worker``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.infrastructure import REPO_ROOT
from tests.support.lifecycle import StartStop, end_process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess(StartStop):
    """One worker; logs go to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "processors", "worker"],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "QI_ENV": "development",
                # Faust's data directory, next to the log unless the test names one
                "QI_WORKER_DATADIR": str(self.log_path.with_suffix(".faust-data")),
                **self._env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples matching ``labels`` on the worker's ``/metrics``
        (``QI_METRICS_PORT`` of its environment); 0 when it has none, or does not serve
        metrics yet."""
        url = f"http://127.0.0.1:{self._env['QI_METRICS_PORT']}/metrics"
        try:
            text = httpx.get(url, timeout=10).raise_for_status().text
        except httpx.ConnectError:
            if self.running:
                return 0.0
            raise
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def log_events(self) -> list[dict[str, Any]]:
        """The worker's JSON log lines so far (other output skipped)."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        end_process(self._process, timeout=timeout)
