"""Connection health: the vocabulary the delivery engine writes and the connections API reads.

A neutral module (it imports neither :mod:`processors.deliveries` nor
:mod:`processors.tenants`, which both use it): the health of one destination
(:class:`ConnectionHealth`, :class:`ConnectionState`, hash ``connstate:{destination}``), its
failing-breaker record (:class:`Breaker`, hash ``breaker:{destination}``; the transitions are
in :mod:`processors.deliveries.breaker`), their Redis key names, and :class:`HealthStore`, the
read and forget side the API needs. The delivery state repository
(:mod:`processors.deliveries.state`) writes both hashes; its docstring describes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

__all__ = [
    "Breaker",
    "ConnectionHealth",
    "ConnectionState",
    "HealthStore",
    "breaker_key",
    "health_key",
]


def health_key(prefix: str, destination: str) -> str:
    return f"{prefix}connstate:{destination}"


def breaker_key(prefix: str, destination: str) -> str:
    return f"{prefix}breaker:{destination}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ConnectionHealth(StrEnum):
    """Why a destination is parked: its credentials were refused, its endpoint is gone, or
    it failed for ``breaker_disable_after_seconds`` (see :mod:`processors.deliveries.breaker`)."""

    NEEDS_REAUTH = "needs_reauth"
    GONE = "gone"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """One destination's stored health: ``health`` since ``since`` (epoch seconds)."""

    health: ConnectionHealth
    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class Breaker:
    """One destination's run of transient failures (all zero: closed, nothing counted).

    ``failing_since`` is set while the destination is failing; ``next_probe_at`` and
    ``probe_interval`` are meaningful only then. ``last_error`` is the last failure's reason
    (no payloads: a connector's error reason).
    """

    failures: int = 0
    first_failure_at: float = 0.0
    last_error: str = ""
    failing_since: float = 0.0
    next_probe_at: float = 0.0
    probe_interval: float = 0.0

    @property
    def failing(self) -> bool:
        return self.failing_since > 0

    @property
    def counting(self) -> bool:
        return self.failures > 0

    def to_fields(self) -> dict[str, str]:
        """The Redis hash of the breaker (every field, as text)."""
        return {
            "failures": str(self.failures),
            "first_failure_at": repr(self.first_failure_at),
            "last_error": self.last_error,
            "failing_since": repr(self.failing_since),
            "next_probe_at": repr(self.next_probe_at),
            "probe_interval": repr(self.probe_interval),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Breaker:
        """The breaker of a Redis hash; missing or unreadable fields read as closed."""
        try:
            return cls(
                failures=int(fields.get("failures", "0")),
                first_failure_at=float(fields.get("first_failure_at", "0")),
                last_error=fields.get("last_error", ""),
                failing_since=float(fields.get("failing_since", "0")),
                next_probe_at=float(fields.get("next_probe_at", "0")),
                probe_interval=float(fields.get("probe_interval", "0")),
            )
        except ValueError:
            return cls()

    def older_than(self, updated_at: float) -> bool:
        """Whether the run began before the connection was last saved (it no longer counts)."""
        return self.counting and self.first_failure_at < updated_at


class HealthStore:
    """Reads and forgets the health and breaker of destinations (the API's side)."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    async def read(self, destination: str) -> tuple[ConnectionState | None, Breaker]:
        """The destination's stored health (None: none) and breaker, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(health_key(self._prefix, destination))
        pipe.hgetall(breaker_key(self._prefix, destination))
        raw_health, raw_breaker = await pipe.execute()
        breaker = Breaker.from_fields({_text(k): _text(v) for k, v in raw_breaker.items()})
        health = {_text(k): _text(v) for k, v in raw_health.items()}
        if "state" not in health:
            return None, breaker
        try:
            state = ConnectionState(
                ConnectionHealth(health["state"]), health.get("reason", ""), float(health["since"])
            )
        except (KeyError, ValueError):
            return None, breaker
        return state, breaker

    async def forget(self, destinations: Sequence[str]) -> None:
        """Delete the health and breaker of ``destinations`` (a connection was saved)."""
        if destinations:
            await self._redis.delete(
                *(health_key(self._prefix, d) for d in destinations),
                *(breaker_key(self._prefix, d) for d in destinations),
            )
