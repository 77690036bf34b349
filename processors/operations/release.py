"""Releasing the records held for a match review when a tenant admin decides it.

A review decision (confirm, link, relink, unlink or reject; :mod:`processors.tenants.matches`)
first stores its outcome in the identity store, then calls :meth:`HeldReleaser.release` for the
entity. The releaser takes the entity's held records atomically (:meth:`HeldStore.take
<processors.identity.held.HeldStore.take>`) and sends each again through the normal delivery
path with :class:`~processors.operations.reinject.Reinjector`: a copy on
``integrations.retry.<C>`` with ``qi.run.kind = release`` and ``qi.replay_id`` = the release
id, due at once. The sink then finds what the decision stored: the confirmed or hand-made link
(the record updates that partner object), or, after a reject, no candidate it may link (the
record creates a new partner object); after an unlink the entity is looked up again.

Exactly once:

- the take moves the list aside in one script, so two concurrent decisions never both take
  it, and a repeated decision finds nothing left (it answers ``released: 0``);
- the list is forgotten only after the broker acknowledged every copy; if it refused, the
  records stay taken under their release id and the next decision on the entity sends them
  again with the same id (so the same delivery ids);
- a ``release`` copy never re-sends an idempotency key already delivered (the engine's claim
  script), so a copy sent twice, or a record also delivered by a newer export, reaches the
  partner once.

The release id is derived from the decision (connection, entity, decision time):
``rel-`` and 24 hex digits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import Producer
from redis.asyncio import Redis

from processors.identity.held import HeldStore, HeldSubject, Released, ReleaseError, Taken
from processors.operations.reinject import Reinjector
from processors.settings import Settings
from processors.topics import TopicMap

__all__ = ["HeldReleaser", "release_id_for"]

logger = logging.getLogger(__name__)


def release_id_for(subject: HeldSubject, *, decision: str, decided_at_ms: int) -> str:
    """The release id of ``decision`` on ``subject`` at ``decided_at_ms``."""
    seed = f"{subject.member()}|{decision}|{decided_at_ms}".encode()
    return f"rel-{hashlib.sha256(seed).hexdigest()[:24]}"


class HeldReleaser:
    """Sends the records held for an entity again, once; see the module docstring."""

    def __init__(
        self,
        store: HeldStore,
        reinjector: Callable[[], Reinjector],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._reinjector = reinjector
        self._clock = clock

    @classmethod
    def for_api(
        cls, redis: Redis, settings: Settings, producer: Callable[[], Producer]
    ) -> HeldReleaser:
        """The API's releaser: its Redis client, and its one producer (made on first use)."""
        topics = TopicMap(settings.topics.prefix)
        return cls(
            HeldStore(redis, key_prefix=settings.redis.key_prefix),
            lambda: Reinjector(settings.kafka, topics, client=producer()),
        )

    async def release(
        self, subject: HeldSubject, *, connector: str, tenant_id: str, decision: str
    ) -> Released:
        """Release what is held for ``subject``; :class:`ReleaseError` if the broker refused
        the copies (they stay taken, and the next decision on the entity sends them)."""
        now_ms = int(self._clock() * 1000)
        release_id = release_id_for(subject, decision=decision, decided_at_ms=now_ms)
        taken = await self._store.take(subject, release_id=release_id, connector=connector)
        where = {"tenant_id": tenant_id, "connection_id": subject.connection_id}
        if taken.busy:
            logger.info("identity.held.release_busy", extra=where)
            return Released(0, None)
        if not taken.records:
            return Released(0, None)
        try:
            await asyncio.to_thread(self._send, taken, now_ms)
        except Exception as exc:
            await self._store.abandon(subject, taken)
            logger.warning(
                "identity.held.release_failed",
                extra={
                    **where,
                    "release_id": taken.release_id,
                    "held": len(taken.records),
                    "error": type(exc).__name__,
                },
            )
            msg = "the held records could not be sent again; repeat the decision"
            raise ReleaseError(msg) from exc
        await self._store.finish(subject, taken)
        logger.info(
            "identity.held.released",
            extra={
                **where,
                "kind": subject.kind,
                "decision": decision,
                "release_id": taken.release_id,
                "released": len(taken.records),
            },
        )
        return Released(len(taken.records), taken.release_id)

    def _send(self, taken: Taken, now_ms: int) -> None:
        if taken.release_id is None:  # a take with records always has its id
            return
        reinjector = self._reinjector()
        for record in taken.records:
            reinjector.queue(
                record.value,
                record.headers,
                run_id=taken.release_id,
                kind="release",
                now_ms=now_ms,
            )
        reinjector.flush()
