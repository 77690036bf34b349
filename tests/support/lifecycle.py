"""What every started-and-stopped test helper shares: ``with`` support and ending a child.

Sandboxes, the hostile HTTP server and the API and worker child processes each know how to
start and stop themselves; :class:`StartStop` turns that pair into a context manager
(``with Helper(...) as helper:`` starts it and always stops it), and :func:`end_process`
is the one way a test helper ends a child process: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["StartStop", "end_process"]


class StartStop(ABC):
    """``__enter__`` is ``start()``, ``__exit__`` is ``stop()``; ``stop`` must be idempotent."""

    @abstractmethod
    def start(self) -> Self:
        """Start, and return once ready to be used."""

    @abstractmethod
    def stop(self) -> None:
        """Stop; a second call (or one before ``start``) does nothing."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def end_process(process: subprocess.Popen[bytes] | None, *, timeout: float = 30.0) -> None:
    """SIGTERM a running child, then SIGKILL it if it has not exited within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
