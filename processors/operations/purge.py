"""Offboarding: remove everything Redis keeps for one tenant (``tenant purge``).

Every key the service writes, by family (names under ``QI_REDIS_KEY_PREFIX``; the family names
are those of :data:`FAMILIES` and of the purge report):

==========================  =====================================  ===========================
family                      keys                                   written by
==========================  =====================================  ===========================
``allowlist``               the tenant's member of ``allowlist``   processors.tenants.repository
``connections``             ``tenant:{t}:connections`` (sealed     processors.tenants.repository
                            secrets live inside its records)
``delivery_record_indexes`` ``tenant:{t}:drec``,                   processors.deliveries.records
                            ``tenant:{t}:drec:*``
``delivery_records``        ``drec:{record_id}``                   processors.deliveries.records
``dedupe``                  ``dlv:{idempotency_key}``              processors.deliveries.state
``hops``                    ``hop:{delivery_id}``                  processors.deliveries.state
``oauth_grants``            ``oauth:{connection_id}``              processors.oauthgrants
``delivery_versions``       ``ver:{connection_id}``                processors.deliveries.state
``connection_state``        ``connstate:{connection_id}`` and      processors.deliveries.state
                            ``connstate:{connection_id}:*``
``send_claims``             ``claim:{connection_id}|*``            processors.deliveries.state
``identity_links``          ``idmap:{connection_id}:*``            processors.identity.repository
``identity_reviews``        ``idreview:{connection_id}``           processors.identity.repository
``identity_waiting``        ``idwait:{connection_id}:*``           processors.identity.repository
``identity_rejections``     ``idreject:{connection_id}``           processors.identity.repository
``held_records``            ``idheld:{connection_id}:*``           processors.identity.held
``breakers``                ``breaker:{connection_id}`` and        processors.deliveries.state
                            ``breaker:{connection_id}:*``
``other_tenant_keys``       any other ``tenant:{t}:*`` key         (later features)
==========================  =====================================  ===========================

Not the tenant's, so never touched: ``config:epoch``, the rest of ``allowlist`` and the global
per-connector throttle ``throttle:{connector}`` and the held-record sweep index
``idheld-due:{connector}`` (the purge takes the tenant's members out of it)
(the service keeps no per-tenant rate-limit key
in Redis: a connection's own limits live in the worker's memory).

How the keys are found, without a pattern that could reach another tenant:

1. the tenant id must match the API's tenant id pattern (letters, digits, ``_`` and ``-``, at
   most 64), so it holds no glob character and no ``:``; ``tenant:t_1:*`` then never matches
   ``tenant:t_10:...``, and every pattern is escaped all the same;
2. the connection ids are those of the tenant's stored connections, plus those named by its
   delivery records (connections deleted earlier whose keys a worker wrote again afterwards);
   the connection-keyed families are then looked up by exact key, or scanned with
   ``{family}:{connection_id}:*`` (connection ids hold no ``:``, so one never matches another);
3. ``drec:``, ``dlv:`` and ``hop:`` keys are named by hashes and ids, not by tenant: they are
   the records the tenant's indexes list (each record's own ``tenant_id`` must be the tenant's,
   or it is left alone) and the idempotency keys and delivery ids those records name.
   A dedupe or hop key no remaining record names (its record aged out of the index) cannot be
   told apart; it holds no data (``1``, a number) and expires by itself
   (``QI_DELIVERY_DEDUPE_TTL_SECONDS``, the retry budget plus a day).

Order: the allowlist entry goes first, so routing stops exporting for the tenant while the
rest is removed; the ``tenant:{t}:`` keys (the connections, the record indexes) go last, so a
purge interrupted half-way (Redis gone) finds the same connection ids and records when it is
run again, and finishes. Keys are deleted with ``UNLINK`` in batches of
:data:`BATCH`; a dry run counts the same keys with ``EXISTS`` and deletes nothing. A worker
delivering for the tenant while it is purged can still write a delivery record or a state key
for it afterwards (a record in flight that finds its connection gone is dead-lettered and
recorded): purge once the tenant's traffic has stopped, or run it again afterwards.

Not removed: the tenant's records on Kafka topics (exports, delivery records, dead letters, the
domain events): they cannot be deleted one tenant at a time and age out with the topics'
retention (:mod:`processors.topics`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from redis.asyncio import Redis

from processors.auth.principal import TENANT_ID_PATTERN

__all__ = [
    "BATCH",
    "FAMILIES",
    "InvalidTenantError",
    "PurgeError",
    "PurgeReport",
    "TenantPurge",
    "UnknownTenantError",
]

logger = logging.getLogger(__name__)

BATCH: Final = 500
"""Keys per ``UNLINK`` (or ``EXISTS``) call, and the ``COUNT`` hint of each ``SCAN``."""

FAMILIES: Final[tuple[str, ...]] = (
    "allowlist",
    "connections",
    "delivery_record_indexes",
    "delivery_records",
    "dedupe",
    "hops",
    "oauth_grants",
    "delivery_versions",
    "connection_state",
    "send_claims",
    "identity_links",
    "identity_reviews",
    "identity_waiting",
    "identity_rejections",
    "held_records",
    "breakers",
    "other_tenant_keys",
)
"""Every family of the report, in the order the report lists them."""

_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)
_CONNECTION_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_GLOB_SPECIAL: Final = "*?[]\\"


class PurgeError(ValueError):
    """The purge was refused before anything was deleted."""


class InvalidTenantError(PurgeError):
    """The tenant id is empty or not a valid tenant id."""


class UnknownTenantError(PurgeError):
    """Redis holds nothing for this tenant: no allowlist entry, connection or record index."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed (or, in a dry run, would remove): keys per family."""

    tenant_id: str
    dry_run: bool
    families: dict[str, int]
    connection_ids: tuple[str, ...] = ()

    @property
    def deleted(self) -> int:
        """Keys (and the allowlist entry) removed; ``0`` in a dry run."""
        return 0 if self.dry_run else sum(self.families.values())

    def as_json(self) -> dict[str, object]:
        """The command's ``--json`` line."""
        return {
            "tenant_id": self.tenant_id,
            "deleted": self.deleted,
            "families": dict(self.families),
            "dry_run": self.dry_run,
        }


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in _GLOB_SPECIAL else char for char in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def validate_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` if it is a valid tenant id, else :class:`InvalidTenantError`."""
    if not tenant_id:
        msg = "the tenant id is empty"
        raise InvalidTenantError(msg)
    if _TENANT_ID.fullmatch(tenant_id) is None:
        msg = "the tenant id must be 1 to 64 letters, digits, '_' or '-'"
        raise InvalidTenantError(msg)
    return tenant_id


@dataclass(slots=True)
class _Run:
    """One purge in progress: counts per family, the records seen, the connection ids found."""

    tenant_id: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAMILIES, 0))
    seen_records: set[str] = field(default_factory=set)
    seen_keys: set[str] = field(default_factory=set)
    connection_ids: set[str] = field(default_factory=set)


class TenantPurge:
    """Finds and removes one tenant's keys (see the module doc)."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _tenant_base(self, tenant_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:"

    async def exists(self, tenant_id: str) -> bool:
        """Whether Redis holds anything for ``tenant_id`` (allowlisted, or a ``tenant:`` key)."""
        if await self._redis.sismember(f"{self._prefix}allowlist", tenant_id):
            return True
        base = self._tenant_base(tenant_id)
        if await self._redis.exists(f"{base}connections", f"{base}drec"):
            return True
        pattern = f"{_glob_escape(base)}*"
        async for _key in self._redis.scan_iter(match=pattern, count=BATCH):
            return True
        return False

    async def purge(self, tenant_id: str, *, dry_run: bool = False) -> PurgeReport:
        """Remove (or with ``dry_run`` count) every key of ``tenant_id``.

        Raises :class:`InvalidTenantError` or :class:`UnknownTenantError` before touching
        anything, and Redis errors as they come (a purge stopped half-way is finished by
        running it again: what was removed stays removed).
        """
        validate_tenant_id(tenant_id)
        if not await self.exists(tenant_id):
            msg = f"no tenant {tenant_id!r}: nothing in Redis is kept for it"
            raise UnknownTenantError(msg)
        run = _Run(tenant_id, dry_run)
        base = self._tenant_base(tenant_id)
        run.connection_ids.update(await self._stored_connection_ids(tenant_id))
        allowlist = f"{self._prefix}allowlist"
        if dry_run:
            run.counts["allowlist"] = int(await self._redis.sismember(allowlist, tenant_id))
        else:
            run.counts["allowlist"] = int(await self._redis.srem(allowlist, tenant_id))
        await self._records(run)
        for connection_id in sorted(run.connection_ids):
            await self._connection_keys(run, connection_id)
        # Last, every tenant:{t}: key: the connections, the record indexes, anything else.
        pending: dict[str, list[str]] = {}
        async for raw in self._scan(f"{_glob_escape(base)}*"):
            key = _text(raw)
            rest = key.removeprefix(base)
            if rest == "connections":
                family = "connections"
            elif rest == "drec" or rest.startswith("drec:"):
                family = "delivery_record_indexes"
            else:
                family = "other_tenant_keys"
            batch = pending.setdefault(family, [])
            batch.append(key)
            if len(batch) >= BATCH:
                await self._take(run, family, batch)
                pending[family] = []
        for family, keys in pending.items():
            await self._take(run, family, keys)
        report = PurgeReport(
            tenant_id, dry_run, dict(run.counts), tuple(sorted(run.connection_ids))
        )
        logger.info(
            "operations.tenant.purge_planned" if dry_run else "operations.tenant.purged",
            extra={
                "tenant_id": tenant_id,
                "deleted": report.deleted,
                "families": report.families,
                "connections": len(report.connection_ids),
            },
        )
        return report

    async def _stored_connection_ids(self, tenant_id: str) -> set[str]:
        raw = await self._redis.hgetall(f"{self._tenant_base(tenant_id)}connections")
        found: set[str] = set()
        for connector, value in raw.items():
            connection_id = _field(value, "connection_id")
            if connection_id is None or _CONNECTION_ID.fullmatch(connection_id) is None:
                logger.warning(
                    "operations.tenant.purge.connection_unreadable",
                    extra={"tenant_id": tenant_id, "connector": _text(connector)},
                )
                continue
            found.add(connection_id)
        return found

    async def _records(self, run: _Run) -> None:
        """The delivery records the tenant's indexes list, and the dedupe and hop keys and
        connection ids those records name.

        Every record is in the tenant's whole index; the status and event-type indexes are
        read too (a handful of keys). The per-event indexes (one per event id, as many as the
        events) hold nothing the others do not: they are removed, unread, with the rest of the
        ``tenant:{t}:`` keys.
        """
        base = self._tenant_base(run.tenant_id)
        escaped = _glob_escape(base)
        indexes = [f"{base}drec"]
        for kind in ("status", "event_type"):
            indexes += [_text(key) async for key in self._scan(f"{escaped}drec:{kind}:*")]
        for index in indexes:
            batch: list[str] = []
            async for member, _score in self._redis.zscan_iter(index, count=BATCH):
                record = _text(member)
                if record not in run.seen_records:
                    run.seen_records.add(record)
                    batch.append(record)
                if len(batch) >= BATCH:
                    await self._record_batch(run, batch)
                    batch = []
            await self._record_batch(run, batch)

    async def _record_batch(self, run: _Run, record_ids: Sequence[str]) -> None:
        if not record_ids:
            return
        keys = [f"{self._prefix}drec:{rid}" for rid in record_ids]
        values = await self._redis.mget(keys)
        mine: list[str] = []
        dedupe: list[str] = []
        hops: list[str] = []
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue
            if _field(value, "tenant_id") != run.tenant_id:
                logger.warning(
                    "operations.tenant.purge.foreign_record",
                    extra={"tenant_id": run.tenant_id, "key": key},
                )
                continue
            mine.append(key)
            connection_id = _field(value, "connection_id")
            if connection_id is not None and _CONNECTION_ID.fullmatch(connection_id):
                run.connection_ids.add(connection_id)
            if (idempotency_key := _field(value, "idempotency_key")) is not None:
                dedupe.append(f"{self._prefix}dlv:{idempotency_key}")
            if (delivery_id := _field(value, "delivery_id")) is not None:
                hops.append(f"{self._prefix}hop:{delivery_id}")
        await self._take(run, "delivery_records", mine)
        await self._take(run, "dedupe", dedupe)
        await self._take(run, "hops", hops)

    async def _connection_keys(self, run: _Run, connection_id: str) -> None:
        key = f"{self._prefix}{{}}:{connection_id}".format
        await self._take(run, "oauth_grants", [key("oauth")])
        await self._take(run, "delivery_versions", [key("ver")])
        await self._take(run, "identity_reviews", [key("idreview")])
        await self._take(run, "connection_state", [key("connstate")])
        await self._take(run, "identity_rejections", [key("idreject")])
        await self._take(run, "breakers", [key("breaker")])
        escaped = _glob_escape(connection_id)
        for family, pattern in (
            ("connection_state", f"connstate:{escaped}:*"),
            ("send_claims", f"claim:{escaped}|*"),
            ("identity_links", f"idmap:{escaped}:*"),
            ("identity_waiting", f"idwait:{escaped}:*"),
            ("held_records", f"idheld:{escaped}:*"),
            ("breakers", f"breaker:{escaped}:*"),
        ):
            found = [_text(k) async for k in self._scan(_glob_escape(self._prefix) + pattern)]
            for start in range(0, len(found), BATCH):
                await self._take(run, family, found[start : start + BATCH])
        if not run.dry_run:
            await self._held_sweep_members(connection_id)

    async def _held_sweep_members(self, connection_id: str) -> None:
        """Drop the connection's entries from the shared held-record sweep indexes (members,
        not keys: not counted)."""
        member = _glob_escape(json.dumps([connection_id])[:-1] + ",") + "*"
        async for due in self._scan(_glob_escape(self._prefix) + "idheld-due:*"):
            found = [m async for m, _score in self._redis.zscan_iter(due, match=member)]
            if found:
                await self._redis.zrem(due, *found)

    def _scan(self, pattern: str) -> AsyncIterator[bytes | str]:
        return self._redis.scan_iter(match=pattern, count=BATCH)

    async def _take(self, run: _Run, family: str, keys: Iterable[str]) -> None:
        """Delete ``keys`` (a dry run: count those that exist) and add them to ``family``.

        A dry run, which deletes nothing, counts each key once (an ``UNLINK`` of a key already
        removed counts nothing by itself).
        """
        batch = list(dict.fromkeys(keys))
        if run.dry_run:
            batch = [key for key in batch if key not in run.seen_keys]
            run.seen_keys.update(batch)
        if not batch:
            return
        if run.dry_run:
            count = await self._redis.exists(*batch)
        else:
            count = await self._redis.unlink(*batch)
        run.counts[family] += int(count)


def _field(raw: bytes | str, name: str) -> str | None:
    """The string field ``name`` of a stored JSON object, or ``None`` (absent or unreadable)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None
