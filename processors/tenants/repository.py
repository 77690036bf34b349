"""Connection configuration and the allowlist in Redis.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``allowlist``: a set of tenant ids allowed to use integrations;
- ``tenant:{tenant_id}:connections``: a hash ``connector -> ConnectionRecord JSON``, so there is
  at most one connection per connector per tenant by construction;
- ``config:epoch``: the configuration epoch, a sentinel written (``SET NX``, in the same
  transaction) with every configuration write and by :meth:`ConnectionRepository.initialise`.

Only this module touches these keys.

Deleting a connection also forgets what other modules keep under its connection id
(:meth:`ConnectionRepository.forget_connection`, the families in
:data:`CONNECTION_KEY_FAMILIES`): its sealed OAuth grant (``oauth:``,
:mod:`processors.oauthgrants`), identity links, review entries and waiting people
(``idmap:``, ``idreview:``, ``idwait:``, ``idreject:``, :mod:`processors.identity.repository`),
records held for a review (``idheld:``, :mod:`processors.identity.held`) and delivery
state (``ver:``, ``connstate:`` and the webhook copy's ``connstate:{id}:webhook``,
:mod:`processors.deliveries.state`). A new connection for the same connector gets a new
connection id, so nothing of the old one could be reused anyway; forgetting it keeps Redis
from growing with every delete and takes the sealed grant out of reach at once.

Not forgotten: keys named by idempotency key or delivery id (``dlv:``, ``hop:``, which expire)
and the tenant's delivery records (``drec:``, the delivery history, kept for its retention).
A worker that was delivering for the connection when it was deleted may still write a link or
a state key for it afterwards; such stragglers hold no secret and are not read again.

Configuration loss. A Redis that comes back empty (``FLUSHALL``, a lost AOF, a wrong instance)
looks exactly like a deployment where no tenant is allowlisted: the router would skip every
event and commit, and the exports would be gone. The epoch tells the two apart. While it is
missing, :meth:`ConnectionRepository.routing_for` (one call per routing batch) raises
:class:`ConfigurationLostError`, a :class:`~redis.exceptions.RedisError`, so the routing agent
retries the batch with backoff like any Redis outage and commits nothing; it logs
``routing.config.lost`` at ERROR (once a minute, not per batch) and sets ``qi_config_lost`` to 1
(the ``QueastConfigLost`` alert). A repository built with ``detect_config_loss=True`` (the
delivery engine's) does the same in :meth:`~ConnectionRepository.get` when a connection is
missing, so deliveries wait instead of being dead-lettered as "connection removed". Routing
resumes by itself once configuration is written again: ``connections seed``, any allowlist or
connection write through the API, or ``connections init`` (writes the epoch alone).

Any configuration write marks the configuration as the one to route by: after a loss, restore
the whole configuration (from the seed file or a backup) before, or instead of, single API
writes, or the tenants not yet restored are routed as "not allowlisted" from then on. (After a
flush only a platform admin can write: a tenant admin needs the allowlist.)

A brand-new deployment has no epoch either, and holds its events in Kafka, routed nothing and
committed nothing, until its configuration is first written (``connections seed`` or the API)
or an operator runs ``connections init`` to say "start with no tenants". Nothing writes the
epoch implicitly at start: a process starting after a flush must not paper over the loss.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from processors.metrics import CONFIG_LOST
from processors.tenants.models import ConnectionRecord, Connector, TenantRouting

__all__ = ["CONNECTION_KEY_FAMILIES", "ConfigurationLostError", "ConnectionRepository"]

CONNECTION_KEY_FAMILIES: Final[tuple[str, ...]] = (
    "oauth:{connection_id}",
    "ver:{connection_id}",
    "connstate:{connection_id}",
    "connstate:{connection_id}:webhook",
    "idreview:{connection_id}",
    "idmap:{connection_id}:*",
    "idwait:{connection_id}:*",
    "idheld:{connection_id}:*",
    "idreject:{connection_id}",
)
"""Every key kept for one connection id, under the key prefix (``*``: any suffix)."""
_SCAN_COUNT: Final = 1000

logger = logging.getLogger(__name__)

_LOST_LOG_INTERVAL_SECONDS = 60.0


class ConfigurationLostError(RedisError):
    """Redis holds no configuration epoch: its configuration was lost or never written.

    A :class:`~redis.exceptions.RedisError`, so every loop that waits out a Redis outage
    (routing batches, delivery lanes) waits this out too, and the API answers 503.
    """


class ConnectionRepository:
    """Reads and writes connections and the allowlist."""

    def __init__(
        self, redis: Redis, *, key_prefix: str = "qi:", detect_config_loss: bool = False
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._detect_config_loss = detect_config_loss
        self._lost_logged_at: float | None = None
        self._lost = False

    def _allowlist_key(self) -> str:
        return f"{self._prefix}allowlist"

    def _connections_key(self, tenant_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:connections"

    def _epoch_key(self) -> str:
        return f"{self._prefix}config:epoch"

    def _stamp(self, pipe: Pipeline) -> None:
        """Queue the epoch write: kept if present, so the epoch names the first write."""
        epoch = f"{datetime.now(UTC).isoformat()} {uuid.uuid4().hex}"
        pipe.set(self._epoch_key(), epoch, nx=True)

    async def initialise(self) -> str:
        """Write the epoch if missing (a deployment that starts with no configuration)."""
        pipe = self._redis.pipeline(transaction=True)
        self._stamp(pipe)
        await pipe.execute()
        epoch = await self.epoch()
        if epoch is None:  # pragma: no cover - deleted between the two calls
            msg = "the configuration epoch vanished as it was written"
            raise ConfigurationLostError(msg)
        return epoch

    async def epoch(self) -> str | None:
        """The configuration epoch, or None when configuration was lost or never written."""
        raw = await self._redis.get(self._epoch_key())
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def allow(self, tenant_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(self._allowlist_key(), tenant_id)
        self._stamp(pipe)
        await pipe.execute()

    async def disallow(self, tenant_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(self._allowlist_key(), tenant_id)
        self._stamp(pipe)
        await pipe.execute()

    async def is_allowed(self, tenant_id: str) -> bool:
        return bool(await self._redis.sismember(self._allowlist_key(), tenant_id))

    async def put(self, connection: ConnectionRecord) -> None:
        """Store a connection, replacing the tenant's connection for the same connector."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            self._connections_key(connection.tenant_id),
            connection.connector.value,
            connection.model_dump_json(),
        )
        self._stamp(pipe)
        await pipe.execute()

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        """The tenant's connection for ``connector``, or None.

        With ``detect_config_loss``, a missing connection in a Redis without an epoch raises
        :class:`ConfigurationLostError` instead of answering None.
        """
        raw = await self._redis.hget(self._connections_key(tenant_id), connector.value)
        if raw is None:
            if self._detect_config_loss and await self.epoch() is None:
                self._report_lost("delivery.config.lost")
                msg = "no configuration epoch in Redis: configuration lost or never written"
                raise ConfigurationLostError(msg)
            return None
        return ConnectionRecord.model_validate_json(raw)

    async def list(self, tenant_id: str) -> list[ConnectionRecord]:
        raw = await self._redis.hgetall(self._connections_key(tenant_id))
        return sorted(
            (ConnectionRecord.model_validate_json(v) for v in raw.values()),
            key=lambda c: c.connector.value,
        )

    async def delete(self, tenant_id: str, connector: Connector) -> bool:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self._connections_key(tenant_id), connector.value)
        self._stamp(pipe)
        removed, _stamped = await pipe.execute()
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
        """Allowlist membership and connections of many tenants in one round trip.

        Raises :class:`ConfigurationLostError` when Redis holds no configuration epoch.
        """
        tenants = sorted(set(tenant_ids))
        if not tenants:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        pipe.exists(self._epoch_key())
        for tenant_id in tenants:
            pipe.sismember(self._allowlist_key(), tenant_id)
            pipe.hgetall(self._connections_key(tenant_id))
        epoch_exists, *replies = await pipe.execute()
        if not epoch_exists:
            self._report_lost("routing.config.lost")
            msg = "no configuration epoch in Redis: configuration lost or never written"
            raise ConfigurationLostError(msg)
        self._report_present()
        routing: dict[str, TenantRouting] = {}
        for index, tenant_id in enumerate(tenants):
            allowed, raw = replies[2 * index], replies[2 * index + 1]
            connections, unreadable = _readable_connections(tenant_id, raw)
            connections.sort(key=lambda c: c.connector.value)
            routing[tenant_id] = TenantRouting(tenant_id, bool(allowed), connections, unreadable)
        return routing

    def _report_lost(self, event: str) -> None:
        CONFIG_LOST.set(1)
        self._lost = True
        now = time.monotonic()
        if self._lost_logged_at is None or now - self._lost_logged_at >= _LOST_LOG_INTERVAL_SECONDS:
            self._lost_logged_at = now
            logger.error(
                event,
                extra={
                    "epoch_key": self._epoch_key(),
                    "action": "restore the configuration (connections seed, the API) or run"
                    " connections init for a deployment that starts empty",
                },
            )

    def _report_present(self) -> None:
        if self._lost:
            self._lost = False
            self._lost_logged_at = None
            logger.warning("routing.config.restored", extra={"epoch_key": self._epoch_key()})
        CONFIG_LOST.set(0)


def _readable_connections(
    tenant_id: str, raw: dict[bytes, bytes]
) -> tuple[list[ConnectionRecord], list[str]]:
    """The tenant's stored connection records that validate, and the connectors of the rest.

    A stored value that does not validate (corrupt, hand-edited, written by a newer version)
    is one tenant's problem: it is logged and reported, never raised for the whole batch.
    """
    connections: list[ConnectionRecord] = []
    unreadable: list[str] = []
    for name, value in raw.items():
        connector = name.decode("utf-8", errors="replace")
        try:
            connections.append(ConnectionRecord.model_validate_json(value))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            unreadable.append(connector)
            logger.error(
                "routing.connection.unreadable",
                extra={
                    "tenant_id": tenant_id,
                    "connector": connector,
                    "error": type(exc).__name__,
                },
            )
    return connections, sorted(unreadable)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
