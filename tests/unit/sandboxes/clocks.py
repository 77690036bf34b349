"""A clock the sandboxes' unit tests steer: real time until frozen, then moved by hand.

The sandboxes take their time as callables (``SandboxState(clock=..., monotonic=...)``);
a served sandbox outlives one test, so its clock must be real for tests that pace with
real waits and exact for tests of rolling windows and expiry. :class:`SteeredClock` is
both: it follows the real clocks (plus any offset) until :meth:`~SteeredClock.freeze`,
after which only :meth:`~SteeredClock.advance` moves it. It also satisfies
``connectors.base.Clock``, so a sink and the sandbox it talks to can share one time.
"""

from __future__ import annotations

import asyncio
import threading
import time


class SteeredClock:
    """Wall and monotonic time: real (plus an offset) until frozen, then moved by hand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen: tuple[float, float] | None = None

    def time(self) -> float:
        """Wall-clock seconds."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen[0]
            return time.time() + self._offset

    def monotonic(self) -> float:
        """Monotonic seconds."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen[1]
            return time.monotonic() + self._offset

    def freeze(self) -> None:
        """Stop following real time; from now on only :meth:`advance` moves the clock."""
        with self._lock:
            if self._frozen is None:
                self._frozen = (time.time() + self._offset, time.monotonic() + self._offset)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``, frozen or not."""
        with self._lock:
            if self._frozen is None:
                self._offset += seconds
            else:
                wall, mono = self._frozen
                self._frozen = (wall + seconds, mono + seconds)

    def release(self) -> None:
        """Follow real time again, without offset."""
        with self._lock:
            self._frozen = None
            self._offset = 0.0

    async def sleep(self, seconds: float) -> None:
        """Advance a frozen clock by ``seconds``; really wait when following real time."""
        with self._lock:
            frozen = self._frozen is not None
        if frozen:
            self.advance(seconds)
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(seconds)
