"""Delivery working state in Redis: dedupe, the stale-version guard, hops, connection health.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``dlv:{idempotency_key}``: set once a destination accepted the key (expires after
  ``QI_DELIVERY_DEDUPE_TTL_SECONDS``); a delivered key is never sent again, except by a replay;
- ``ver:{connection_id}``: hash ``{contract}:{entity_id} -> version`` of the newest version
  delivered to the connection's destination, raised only (a Lua compare-and-set);
- ``hop:{delivery_id}``: the newest hop of a re-scheduled delivery; older copies are dropped;
- ``connstate:{connection_id}``: hash ``state`` (``needs_reauth`` or ``gone``), ``reason``,
  ``since`` (epoch seconds). A connection updated after ``since`` is healthy again.

Delivery modes: the engine keys ``connstate:`` by destination (the connection id, or
``{connection_id}:webhook`` for a partner connection's webhook copy, see
:func:`processors.deliveries.envelope.destination_key`); a copy's ``ver:`` field is prefixed
with its connector (``webhook|company:co_1``), so each destination has its own guard.

Reads for a batch are one pipelined round trip; so are writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from processors.deliveries.envelope import DeliveryItem

__all__ = ["ConnectionHealth", "ConnectionState", "DeliveryState", "DeliveryStateRepository"]

_RAISE_VERSION = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (not current) or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""
_RAISE_HOP = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ConnectionHealth(StrEnum):
    NEEDS_REAUTH = "needs_reauth"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What Redis knows of one item before it is sent."""

    delivered: bool
    newest_hop: int
    delivered_version: int | None


@dataclass(frozen=True, slots=True)
class ConnectionState:
    health: ConnectionHealth
    reason: str
    since: float


class DeliveryStateRepository:
    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        dedupe_ttl_seconds: int,
        hop_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._dedupe_ttl = dedupe_ttl_seconds
        self._hop_ttl = hop_ttl_seconds
        self._raise_version = redis.register_script(_RAISE_VERSION)
        self._raise_hop = redis.register_script(_RAISE_HOP)

    def _dlv(self, key: str) -> str:
        return f"{self._prefix}dlv:{key}"

    def _ver(self, connection_id: str) -> str:
        return f"{self._prefix}ver:{connection_id}"

    def _hop(self, delivery_id: str) -> str:
        return f"{self._prefix}hop:{delivery_id}"

    def _state(self, connection_id: str) -> str:
        return f"{self._prefix}connstate:{connection_id}"

    async def load(self, items: Sequence[DeliveryItem]) -> list[DeliveryState]:
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            pipe.exists(self._dlv(item.idempotency_key))
            pipe.get(self._hop(item.delivery_id))
            pipe.hget(self._ver(item.connection_id), item.version_field)
        replies = await pipe.execute()
        states = []
        for index in range(len(items)):
            delivered, hop, version = replies[3 * index : 3 * index + 3]
            states.append(
                DeliveryState(
                    delivered=bool(delivered),
                    newest_hop=int(hop) if hop is not None else 0,
                    delivered_version=int(version) if version is not None else None,
                )
            )
        return states

    async def mark_delivered(self, items: Sequence[DeliveryItem]) -> None:
        """Remember the keys and raise the delivered versions (one round trip)."""
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            pipe.set(self._dlv(item.idempotency_key), "1", ex=self._dedupe_ttl)
            await self._raise_version(
                keys=[self._ver(item.connection_id)],
                args=[item.version_field, item.entity_version],
                client=pipe,
            )
        await pipe.execute()

    async def record_hops(self, hops: Sequence[tuple[str, int]]) -> None:
        """After the next hop of each delivery was written: older copies become stale."""
        if not hops:
            return
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id, hop in hops:
            await self._raise_hop(
                keys=[self._hop(delivery_id)], args=[hop, self._hop_ttl], client=pipe
            )
        await pipe.execute()

    async def connection_state(self, connection_id: str) -> ConnectionState | None:
        raw = await self._redis.hgetall(self._state(connection_id))
        if not raw:
            return None
        decoded = {_text(k): _text(v) for k, v in raw.items()}
        return ConnectionState(
            ConnectionHealth(decoded["state"]), decoded.get("reason", ""), float(decoded["since"])
        )

    async def set_connection_state(
        self, connection_id: str, health: ConnectionHealth, *, reason: str, since: float
    ) -> None:
        await self._redis.hset(
            self._state(connection_id),
            mapping={"state": health.value, "reason": reason, "since": str(since)},
        )

    async def clear_connection_state(self, connection_id: str) -> None:
        await self._redis.delete(self._state(connection_id))
