"""A global per-connector throttle in Redis, shared by every worker.

GCRA (generic cell rate algorithm) in one Lua script: a single key per connector holds the
theoretical arrival time. Workers lease tokens in small blocks (``lease``) and spend them
locally, so the throttle costs one Redis round trip per block, not per delivery. It returns a
wait instead of sleeping: the caller waits briefly or defers the records (STYLE habit 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

__all__ = ["GlobalThrottle"]

_GCRA = """
local now = tonumber(ARGV[1])
local emission = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + n * emission
local wait = new_tat - now - burst
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(burst + n * emission + 1000))
return '0'
"""


class GlobalThrottle:
    """At most ``rate`` tokens per second for one connector across all workers."""

    def __init__(
        self,
        redis: Redis,
        *,
        key: str,
        rate_per_second: float,
        burst_seconds: float = 1.0,
        lease: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._emission_ms = 1000.0 / rate_per_second
        self._burst_ms = burst_seconds * 1000.0
        self._lease = lease
        self._clock = clock
        self._tokens = 0
        self._script = redis.register_script(_GCRA)

    async def acquire(self, n: int = 1) -> float:
        """0.0 when ``n`` tokens were taken, else seconds until they could be (none taken)."""
        if self._tokens >= n:
            self._tokens -= n
            return 0.0
        want = max(n - self._tokens, self._lease)
        wait_ms = float(
            await self._script(
                keys=[self._key],
                args=[self._clock() * 1000.0, self._emission_ms, self._burst_ms, want],
            )
        )
        if wait_ms > 0:
            return wait_ms / 1000.0
        self._tokens += want - n
        return 0.0
