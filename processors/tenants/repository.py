"""Connection configuration and the allowlist in Redis.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``allowlist``: a set of tenant ids allowed to use integrations;
- ``tenant:{tenant_id}:connections``: a hash ``connector -> ConnectionRecord JSON``, so there is
  at most one connection per connector per tenant by construction.

Only this module touches these keys.

Deleting a connection also forgets what other modules keep under its connection id
(:meth:`ConnectionRepository.forget_connection`, the families in
:data:`CONNECTION_KEY_FAMILIES`): its sealed OAuth grant (``oauth:``,
:mod:`processors.deliveries.tokens`), identity links, review entries and waiting people
(``idmap:``, ``idreview:``, ``idwait:``, :mod:`processors.identity.repository`) and delivery
state (``ver:``, ``connstate:`` and the webhook copy's ``connstate:{id}:webhook``,
:mod:`processors.deliveries.state`). A new connection for the same connector gets a new
connection id, so nothing of the old one could be reused anyway; forgetting it keeps Redis
from growing with every delete and takes the sealed grant out of reach at once.

Not forgotten: keys named by idempotency key or delivery id (``dlv:``, ``hop:``, which expire)
and the tenant's delivery records (``drec:``, the delivery history, kept for its retention).
A worker that was delivering for the connection when it was deleted may still write a link or
a state key for it afterwards; such stragglers hold no secret and are not read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from redis.asyncio import Redis

from processors.tenants.models import ConnectionRecord, Connector, TenantRouting

__all__ = ["CONNECTION_KEY_FAMILIES", "ConnectionRepository"]

CONNECTION_KEY_FAMILIES: Final[tuple[str, ...]] = (
    "oauth:{connection_id}",
    "ver:{connection_id}",
    "connstate:{connection_id}",
    "connstate:{connection_id}:webhook",
    "idreview:{connection_id}",
    "idmap:{connection_id}:*",
    "idwait:{connection_id}:*",
)
"""Every key kept for one connection id, under the key prefix (``*``: any suffix)."""
_SCAN_COUNT: Final = 1000


class ConnectionRepository:
    """Reads and writes connections and the allowlist."""

    def __init__(self, redis: Redis, *, key_prefix: str = "qi:") -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _allowlist_key(self) -> str:
        return f"{self._prefix}allowlist"

    def _connections_key(self, tenant_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:connections"

    async def allow(self, tenant_id: str) -> None:
        await self._redis.sadd(self._allowlist_key(), tenant_id)

    async def disallow(self, tenant_id: str) -> None:
        await self._redis.srem(self._allowlist_key(), tenant_id)

    async def is_allowed(self, tenant_id: str) -> bool:
        return bool(await self._redis.sismember(self._allowlist_key(), tenant_id))

    async def put(self, connection: ConnectionRecord) -> None:
        """Store a connection, replacing the tenant's connection for the same connector."""
        await self._redis.hset(
            self._connections_key(connection.tenant_id),
            connection.connector.value,
            connection.model_dump_json(),
        )

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        raw = await self._redis.hget(self._connections_key(tenant_id), connector.value)
        return None if raw is None else ConnectionRecord.model_validate_json(raw)

    async def list(self, tenant_id: str) -> list[ConnectionRecord]:
        raw = await self._redis.hgetall(self._connections_key(tenant_id))
        return sorted(
            (ConnectionRecord.model_validate_json(v) for v in raw.values()),
            key=lambda c: c.connector.value,
        )

    async def delete(self, tenant_id: str, connector: Connector) -> bool:
        removed = await self._redis.hdel(self._connections_key(tenant_id), connector.value)
        return bool(removed)

    async def forget_connection(self, connection_id: str) -> int:
        """Delete every key kept for ``connection_id`` (see the module doc); returns how many.

        Exact keys go in one ``DEL``; the families with a suffix are found with one ``SCAN``
        of ``id*:{connection_id}:*``. Call it after :meth:`delete`.
        """
        exact = [
            self._prefix + family.format(connection_id=connection_id)
            for family in CONNECTION_KEY_FAMILIES
            if not family.endswith("*")
        ]
        deleted = int(await self._redis.delete(*exact))
        families = tuple(
            self._prefix + family.format(connection_id=connection_id).removesuffix("*")
            for family in CONNECTION_KEY_FAMILIES
            if family.endswith("*")
        )
        pattern = f"{self._prefix}id*:{_glob_escape(connection_id)}:*"
        found: list[bytes | str] = []
        async for key in self._redis.scan_iter(match=pattern, count=_SCAN_COUNT):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name.startswith(families):
                found.append(key)
        for start in range(0, len(found), _SCAN_COUNT):
            deleted += int(await self._redis.delete(*found[start : start + _SCAN_COUNT]))
        return deleted

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        """Allowlist membership and connections of many tenants in one round trip."""
        tenants = sorted(set(tenant_ids))
        if not tenants:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for tenant_id in tenants:
            pipe.sismember(self._allowlist_key(), tenant_id)
            pipe.hgetall(self._connections_key(tenant_id))
        replies = await pipe.execute()
        routing: dict[str, TenantRouting] = {}
        for index, tenant_id in enumerate(tenants):
            allowed, raw = replies[2 * index], replies[2 * index + 1]
            connections = [ConnectionRecord.model_validate_json(v) for v in raw.values()]
            connections.sort(key=lambda c: c.connector.value)
            routing[tenant_id] = TenantRouting(tenant_id, bool(allowed), connections)
        return routing


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
