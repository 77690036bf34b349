"""The real API as a child process (``python -m processors api``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from tests.support.infrastructure import REPO_ROOT
from tests.support.lifecycle import StartStop, end_process
from tests.support.worker import free_port


class ApiProcess(StartStop):
    """One API process on a free loopback port; logs go to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self.log_path = log_path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_within: float = 60.0) -> Self:
        """Start it and return once ``/healthz`` answers 200 (``RuntimeError`` otherwise)."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "processors", "api", "--port", str(self.port)],
            cwd=REPO_ROOT,
            env={**os.environ, **self._env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"the API exited with {self._process.returncode}; see {self.log_path}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).is_success:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        msg = f"the API did not become ready; see {self.log_path}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        end_process(self._process)
