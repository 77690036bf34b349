"""Delivery working state in Redis: dedupe, the stale-version guard, hops, connection health.

Keys (under ``QI_REDIS_KEY_PREFIX``):

- ``dlv:{idempotency_key}``: set once a destination accepted the key (expires after
  ``QI_DELIVERY_DEDUPE_TTL_SECONDS``); a delivered key is never sent again, except by a replay;
- ``ver:{connection_id}``: hash ``{contract}:{entity_id} -> version`` of the newest version
  claimed for sending to the connection's destination (raised when a claim is taken, so it
  covers every version delivered and the one in flight), raised only (a Lua compare-and-set);
- ``hop:{delivery_id}``: the newest hop of a re-scheduled delivery; older copies are dropped;
- ``connstate:{connection_id}``: hash ``state`` (``needs_reauth``, ``gone`` or
  ``disabled``), ``reason``, ``since`` (epoch seconds). A connection updated after ``since``
  is healthy again;
- ``breaker:{connection_id}``: hash of the destination's failing-breaker
  (:class:`~processors.connection_health.Breaker`: the consecutive transient failures, the
  first failure's time, the last error, and while failing ``failing_since``,
  ``next_probe_at``, ``probe_interval``); absent when closed, expiring
  ``disable_after_seconds`` plus a day after its last change;
- ``claim:{connection_id}|{version_field}``: the send lease of one entity at one destination,
  holding the id of the engine that may send it (``PX`` = ``QI_DELIVERY_CLAIM_LEASE_SECONDS``).

Claims (why and how). With several workers in one consumer group, a partition that moves
from one worker to another is read again by the new owner from its last committed offset
while the old owner may still hold the same records in its lanes and its retry buffer. A
check that *reads* the dedupe key and the delivered version and *then* sends lets both send
the same key, or lets the old owner send version 3 after the new owner delivered version 4.
So an item is sent only under a claim taken by :meth:`DeliveryStateRepository.claim`, one Lua
script per item that, atomically:

1. drops a leftover copy (its hop is older than ``hop:``),
2. skips a delivered key (``dlv:``; replays excepted) and a version older than ``ver:``,
3. answers *busy* when another engine holds the entity's claim (the caller defers the item
   to the retry topic, no attempt spent: it is never dropped, and when it comes back the
   holder's outcome decides it: delivered, stale, or free to send),
4. else sets the claim to the caller's owner id with the lease (re-entrant: the same engine
   may claim again, which refreshes the lease).

The claim is per destination and entity, not per key, so it orders versions too: while one
engine sends version 3, no other engine can send version 4, and once version 4 is claimed
no engine can claim version 3.

Why the version is raised when the claim is taken, not only when the delivery is recorded: a
worker killed after the partner accepted version 4 and before it wrote the outcome leaves no
delivered mark. Versions 1-3 of that entity can still come back later (a full lane deferred
them to the retry topic, and version 4 overtook them), and a guard that only knew delivered
versions would send them after version 4. Raised at claim time, the guard makes every older
version stale from the moment a newer one may have reached the partner; the newer one itself
is still unacknowledged, so it is read again and sent (a duplicate the ``webhook-id`` lets a
receiver drop). The price: when that newer version then fails for good and is
dead-lettered, older versions that arrive after the claim are skipped too, so the partner
keeps what it had until the dead letter is redriven or a newer version comes.

The holder writes the outcome (``dlv:``/``ver:`` for a delivery, the next hop for a
reschedule) *before* :meth:`release` deletes the claim (only if it still holds it), so the
next claimant sees the outcome. While a batch is with the partner the engine renews its
claims (:meth:`renew`) every third of the lease. A worker that crashes while holding claims
leaves them to expire: other workers defer those entities until then, at most one lease. A
worker stalled longer than the lease (no renewal) can lose its claim while its request is in
flight; only then, or when a worker dies between the partner's answer and the outcome write,
can a key be sent twice, and webhooks carry the key as ``webhook-id`` for receivers to
dedupe. The scripts touch several keys, so a Redis Cluster
would need them in one hash slot (a single Redis is what the project runs).

Delivery modes: the engine keys ``connstate:`` by destination (the connection id, or
``{connection_id}:webhook`` for a partner connection's webhook copy, see
:func:`processors.deliveries.envelope.destination_key`); a copy's ``ver:`` field is prefixed
with its connector (``webhook|company:co_1``), so each destination has its own guard.

Reads for a batch are one pipelined round trip; so are writes.

The breaker (why and how; the states are in :mod:`processors.deliveries.breaker`). Every
worker delivering to a destination counts its failures into the same hash, so the count and
the first failure's time are updated atomically with the outcome: the worker reads the hash,
decides with the pure functions of :mod:`~processors.deliveries.breaker`, and writes the result
with one compare-and-set script that writes only if the hash's revision (``rev``, a random
token replaced on every write) is still the one it read; otherwise it reads and decides again.
So two workers failing at once count two failures, and exactly one of them trips the breaker.
Taking the probe is the same transaction, so one caller gets it per interval. Disabling writes
the ``connstate:`` health ``disabled`` and drops the breaker in the same script. Saving a
connection deletes both for every destination of the connection
(:class:`~processors.connection_health.HealthStore`, used by the connections API).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from redis.asyncio import Redis

from processors.connection_health import (
    Breaker,
    ConnectionHealth,
    ConnectionState,
    breaker_key,
    health_key,
)
from processors.deliveries.breaker import (
    BreakerPolicy,
    Transition,
    disabled_reason,
    on_failure,
    on_success,
    take_probe,
)
from processors.deliveries.envelope import DeliveryItem
from processors.redis_client import RELEASE_IF_OWNER, reply_text

__all__ = [
    "Claim",
    "ClaimResult",
    "ConnectionHealth",
    "ConnectionState",
    "DeliveryState",
    "DeliveryStateRepository",
]

# KEYS: breaker, connstate. ARGV: the revision read ('' when there was no hash), ttl seconds,
# the disable reason ('': none), the disabled state's name, now, the new revision (a fresh
# random token, so a hash deleted and written again never shows an old revision), then the
# breaker's fields as name/value pairs (none: delete the breaker). Returns 1 when written, 0
# when the hash changed since it was read (the caller reads and decides again).
_BREAKER_CAS = """
local rev = redis.call('HGET', KEYS[1], 'rev') or ''
if rev ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if #ARGV > 6 then
  local fields = {}
  for i = 7, #ARGV do
    fields[#fields + 1] = ARGV[i]
  end
  redis.call('HSET', KEYS[1], 'rev', ARGV[6], unpack(fields))
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], 'state', ARGV[4], 'reason', ARGV[3], 'since', ARGV[5])
end
return 1
"""

_R = TypeVar("_R")
_BREAKER_TRIES = 100
_BREAKER_JITTER_SECONDS = 0.005
"""After a lost compare-and-set, wait up to this long (at random) before reading again, so
contenders spread out instead of colliding again."""


@dataclass(frozen=True, slots=True)
class _Step(Generic[_R]):
    """What one breaker update decided: the breaker to store (``None``: delete it), the
    caller's answer, and the reason when the destination is disabled now."""

    store: Breaker | None
    answer: _R
    disable_reason: str | None = None


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

# KEYS: dlv, ver, hop, claim. ARGV: version field, entity version, hop, owner, lease ms,
# "1" to skip a delivered key (a replay passes "0").
# Returns {code, detail}: 0 claimed (and the entity's version raised to this one), 1 leftover,
# 2 delivered, 3 stale (detail: the newest version claimed), 4 busy (detail: the lease's
# remaining milliseconds).
_CLAIM = """
local newest_hop = redis.call('GET', KEYS[3])
if newest_hop and tonumber(ARGV[3]) < tonumber(newest_hop) then
  return {1, ''}
end
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {2, ''}
end
local newest = redis.call('HGET', KEYS[2], ARGV[1])
if newest and tonumber(newest) > tonumber(ARGV[2]) then
  return {3, newest}
end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[4] then
  return {4, tostring(redis.call('PTTL', KEYS[4]))}
end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
if (not newest) or tonumber(newest) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return {0, ''}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What Redis knows of one item before it is sent."""

    delivered: bool
    newest_hop: int
    newest_version: int | None


class ClaimResult(StrEnum):
    """What :meth:`DeliveryStateRepository.claim` decided for one item."""

    CLAIMED = "claimed"
    """The caller holds the entity's lease and may send."""
    LEFTOVER = "leftover"
    """A newer hop of the delivery exists: this copy is a leftover of a crash."""
    DELIVERED = "delivered"
    """The key was delivered already (never for a replay)."""
    STALE = "stale"
    """The destination has a newer version of the entity."""
    BUSY = "busy"
    """Another engine holds the entity's lease: defer, do not drop."""


_CLAIM_RESULTS = (
    ClaimResult.CLAIMED,
    ClaimResult.LEFTOVER,
    ClaimResult.DELIVERED,
    ClaimResult.STALE,
    ClaimResult.BUSY,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """One item's claim outcome; ``newest_version`` (the newest version claimed for the entity at
    this destination) is set when it is stale."""

    result: ClaimResult
    newest_version: int | None = None
    lease_left_ms: int | None = None


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
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(RELEASE_IF_OWNER)
        self._breaker_cas = redis.register_script(_BREAKER_CAS)

    def _dlv(self, key: str) -> str:
        return f"{self._prefix}dlv:{key}"

    def _ver(self, connection_id: str) -> str:
        return f"{self._prefix}ver:{connection_id}"

    def _hop(self, delivery_id: str) -> str:
        return f"{self._prefix}hop:{delivery_id}"

    def _state(self, connection_id: str) -> str:
        return health_key(self._prefix, connection_id)

    def _claim_key(self, item: DeliveryItem) -> str:
        return f"{self._prefix}claim:{item.connection_id}|{item.version_field}"

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
                    newest_version=int(version) if version is not None else None,
                )
            )
        return states

    async def claim(
        self, items: Sequence[DeliveryItem], *, owner: str, lease_seconds: float
    ) -> list[Claim]:
        """Check and claim every item atomically (one script each, one round trip).

        See the module docstring for the protocol. ``owner`` identifies the calling engine;
        its own claims are re-entrant and refreshed.
        """
        if not items:
            return []
        lease_ms = max(1, int(lease_seconds * 1000))
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            await self._claim(
                keys=[
                    self._dlv(item.idempotency_key),
                    self._ver(item.connection_id),
                    self._hop(item.delivery_id),
                    self._claim_key(item),
                ],
                args=[
                    item.version_field,
                    item.entity_version,
                    item.hop,
                    owner,
                    lease_ms,
                    "1" if item.skips_delivered else "0",
                ],
                client=pipe,
            )
        replies = await pipe.execute()
        claims = []
        for code, detail in replies:
            result = _CLAIM_RESULTS[int(code)]
            text = reply_text(detail)
            claims.append(
                Claim(
                    result,
                    newest_version=int(text) if result is ClaimResult.STALE else None,
                    lease_left_ms=int(text) if result is ClaimResult.BUSY else None,
                )
            )
        return claims

    async def renew(
        self, items: Sequence[DeliveryItem], *, owner: str, lease_seconds: float
    ) -> None:
        """Extend the leases ``owner`` still holds (a claim it lost stays lost)."""
        if not items:
            return
        lease_ms = max(1, int(lease_seconds * 1000))
        pipe = self._redis.pipeline(transaction=False)
        for key in dict.fromkeys(self._claim_key(item) for item in items):
            await self._renew(keys=[key], args=[owner, lease_ms], client=pipe)
        await pipe.execute()

    async def release(self, items: Sequence[DeliveryItem], *, owner: str) -> None:
        """Drop the claims ``owner`` holds, after the items' outcomes were written."""
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key in dict.fromkeys(self._claim_key(item) for item in items):
            await self._release(keys=[key], args=[owner], client=pipe)
        await pipe.execute()

    async def mark_delivered(self, items: Sequence[DeliveryItem]) -> None:
        """Remember the keys and raise the delivered versions (one round trip).

        The claim raised each version already; raising it again here is not redundant when
        Redis lost its last writes between the claim and the outcome (a restart with
        ``appendfsync everysec`` drops up to a second): the delivery puts the guard back.
        """
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
        decoded = {reply_text(k): reply_text(v) for k, v in raw.items()}
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

    # -- the failing-destination breaker (see the module doc) ------------------------------

    def _breaker(self, destination: str) -> str:
        return breaker_key(self._prefix, destination)

    async def breaker(self, destination: str) -> Breaker:
        """The destination's breaker (closed when there is none)."""
        raw = await self._redis.hgetall(self._breaker(destination))
        return Breaker.from_fields({reply_text(k): reply_text(v) for k, v in raw.items()})

    async def breaker_failed(
        self,
        destination: str,
        *,
        now: float,
        reason: str,
        probe: bool,
        updated_at: float,
        policy: BreakerPolicy,
    ) -> tuple[Breaker, Transition]:
        """Count a batch that failed transiently (:func:`~processors.deliveries.breaker.
        on_failure`), atomically; a disabled destination gets its ``disabled`` health in the
        same transaction (and its breaker is dropped: the returned one is the last run's, for
        its reason). ``updated_at`` is the connection's: a run older than it is over."""

        def step(breaker: Breaker) -> _Step[tuple[Breaker, Transition]]:
            after, transition = on_failure(
                breaker, now=now, reason=reason, probe=probe, policy=policy
            )
            if transition is Transition.DISABLED:
                reason_text = disabled_reason(after, policy=policy)
                return _Step(None, (after, transition), reason_text)
            return _Step(after, (after, transition))

        _kept, answer = await self._update_breaker(
            destination, step, updated_at=updated_at, policy=policy, now=now
        )
        return answer

    async def breaker_succeeded(
        self, destination: str, *, updated_at: float, policy: BreakerPolicy
    ) -> Transition:
        """A delivered record ends the destination's run (``RESUMED`` if it was failing)."""

        def step(breaker: Breaker) -> _Step[Transition]:
            _closed, transition = on_success(breaker)
            return _Step(None, transition)

        _after, transition = await self._update_breaker(
            destination, step, updated_at=updated_at, policy=policy, now=0.0
        )
        return transition

    async def breaker_probe(
        self, destination: str, *, now: float, updated_at: float, policy: BreakerPolicy
    ) -> tuple[Breaker, bool]:
        """Take the failing destination's probe if it is due (:func:`~processors.deliveries.
        breaker.take_probe`); returns the breaker as it is now and whether the caller got it."""

        def step(breaker: Breaker) -> _Step[bool]:
            after, granted = take_probe(breaker, now=now)
            return _Step(after if after.counting else None, granted)

        return await self._update_breaker(
            destination, step, updated_at=updated_at, policy=policy, now=now
        )

    async def _update_breaker(
        self,
        destination: str,
        step: Callable[[Breaker], _Step[_R]],
        *,
        updated_at: float,
        policy: BreakerPolicy,
        now: float,
    ) -> tuple[Breaker, _R]:
        """Read the breaker, apply ``step`` and write its result if the hash is unchanged
        (its ``rev`` field, compared and replaced by one script); read and decide again when
        another client wrote it meanwhile.

        Nothing is written when the breaker is unchanged. A run older than ``updated_at``
        (the connection was saved since) is read as closed.
        """
        key = self._breaker(destination)
        ttl = int(policy.disable_after_seconds) + 86400
        for _ in range(_BREAKER_TRIES):
            raw = {
                reply_text(k): reply_text(v) for k, v in (await self._redis.hgetall(key)).items()
            }
            stored = Breaker.from_fields(raw)
            current = Breaker() if stored.older_than(updated_at) else stored
            result = step(current)
            kept = result.store if result.store is not None else Breaker()
            if result.disable_reason is None and (
                (result.store is None and not raw) or result.store == stored
            ):
                return kept, result.answer
            fields = [] if result.store is None else list(result.store.to_fields().items())
            written = await self._breaker_cas(
                keys=[key, self._state(destination)],
                args=[
                    raw.get("rev", ""),
                    ttl,
                    result.disable_reason or "",
                    ConnectionHealth.DISABLED.value,
                    repr(now),
                    uuid.uuid4().hex,
                    *(part for pair in fields for part in pair),
                ],
            )
            if int(written) == 1:
                return kept, result.answer
            await asyncio.sleep(random.random() * _BREAKER_JITTER_SECONDS)  # noqa: S311 - jitter
        msg = f"the breaker of {destination} kept changing; gave up after {_BREAKER_TRIES} tries"
        raise RuntimeError(msg)
