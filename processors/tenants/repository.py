"""Connection configuration and the allowlist in Redis.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``allowlist``: a set of tenant ids allowed to use integrations;
- ``tenant:{tenant_id}:connections``: a hash ``connector -> ConnectionRecord JSON``, so there is
  at most one connection per connector per tenant by construction.

Only this module touches these keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from processors.tenants.models import ConnectionRecord, Connector, TenantRouting

__all__ = ["ConnectionRepository"]


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
