"""Sending artifacts again: an operator's run puts copies on the connector's retry topic.

Replay, dead-letter redrive, the release of records held for a review and backfill all end the
same way: a record that was exported once (read back from ``integrations.exports.<C>`` or
``integrations.dlq.<C>``) is sent again through the normal delivery path, with its lanes,
limits, retries and delivery records. :class:`Reinjector` produces each copy to
``integrations.retry.<C>``, keyed by its tenant (so it lands on the partition of the worker
that owns the tenant), due at once, with the envelope :func:`run_headers` builds:

- the artifact's own envelope (tenant, connection, event, **idempotency key**: a webhook
  receiver sees the same ``webhook-id``), without the retry and dead-letter bookkeeping of the
  copy it was read from (attempts, hops, error history, ``qi.error.*``, ``qi.original.*``);
- ``qi.replay_id``: the run's id, which every delivery record of the copy carries;
- ``qi.run.kind``: what the run is (:data:`~processors.deliveries.envelope.RUN_KINDS`); only a
  ``replay`` re-sends a key that was delivered before;
- a delivery id of its own (the artifact's key and the run id), so the copy's hops never meet
  the original's, and the same artifact read twice in one run is still one delivery.

Nothing is appended to the export topics: history stays as it was. A run that reads the same
artifact twice (a router that produced it twice after a crash) sends it once: the caller keeps
:meth:`Reinjector.queue`'s answer per idempotency key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Producer

from processors.deliveries.envelope import REQUIRED_HEADERS, RUN_KINDS
from processors.kafka import producer
from processors.routing.idempotency import delivery_id_for
from processors.settings import KafkaSettings
from processors.topics import TopicMap

__all__ = ["RUN_ID", "ReinjectError", "Reinjector", "run_headers"]

RUN_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a run id looks like (it travels in headers and delivery records)."""

_RUN_HEADERS: Final = frozenset({"qi.delivery_id", "qi.replay_id", "qi.run.kind"})
_BOOKKEEPING: Final = frozenset(
    {
        "qi.attempt",
        "qi.hop",
        "qi.not_before",
        "qi.first_attempt_at",
        "qi.errors",
        "qi.retry.kind",
        "qi.payload_included",
    }
)
_BOOKKEEPING_PREFIXES: Final = ("qi.error.", "qi.original.")


class ReinjectError(RuntimeError):
    """A copy could not be sent again (not an artifact, or the broker refused it)."""


def run_headers(
    headers: Mapping[str, str], *, run_id: str, kind: str, now_ms: int
) -> list[tuple[str, bytes]]:
    """The envelope of an artifact's copy sent again by run ``run_id``; see the module."""
    if kind not in RUN_KINDS:
        msg = f"unknown run kind {kind!r}"
        raise ValueError(msg)
    if not RUN_ID.fullmatch(run_id):
        msg = "a run id is 1 to 64 letters, digits, '_' or '-'"
        raise ValueError(msg)
    missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
    if missing:
        msg = f"not an exported artifact: missing {', '.join(missing)}"
        raise ReinjectError(msg)
    kept = [
        (name, value)
        for name, value in headers.items()
        if name not in _RUN_HEADERS
        and name not in _BOOKKEEPING
        and not name.startswith(_BOOKKEEPING_PREFIXES)
    ]
    fresh = {
        "qi.delivery_id": delivery_id_for(headers["qi.idempotency_key"], replay_id=run_id),
        "qi.replay_id": run_id,
        "qi.run.kind": kind,
        "qi.attempt": "0",
        "qi.hop": "0",
        "qi.not_before": str(now_ms),
    }
    return [(name, value.encode()) for name, value in (*kept, *fresh.items())]


class Reinjector(AbstractContextManager["Reinjector"]):
    """Produces run copies to the retry topics and waits until the broker has them all."""

    def __init__(
        self, kafka: KafkaSettings, topics: TopicMap, *, client: Producer | None = None
    ) -> None:
        self._topics = topics
        self._producer = client if client is not None else producer(kafka)
        self._failures: list[str] = []
        self.queued = 0

    def __exit__(self, *exc_info: object) -> None:
        self._producer.flush(10)

    def queue(
        self,
        value: bytes,
        headers: Mapping[str, str],
        *,
        run_id: str,
        kind: str,
        now_ms: int | None = None,
        topic: str | None = None,
    ) -> None:
        """Produce one copy (asynchronously: :meth:`flush` confirms it).

        To the retry topic of the delivering connector, unless ``topic`` names another (a
        backfill's new artifacts go to the export topic, where they become history).
        """
        if not value:
            msg = "the record carries no payload (dead letters without payloads need the export)"
            raise ReinjectError(msg)
        envelope: list[tuple[str, str | bytes | None]] = [
            *run_headers(
                headers,
                run_id=run_id,
                kind=kind,
                now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
            )
        ]
        topic = topic or self._topics.retry(headers["qi.connector"])
        while True:
            try:
                self._producer.produce(
                    topic,
                    key=headers["qi.tenant_id"].encode(),
                    value=value,
                    headers=envelope,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                msg = f"the broker refused the copy: {exc.args[0]}"
                raise ReinjectError(msg) from exc
        self._producer.poll(0)
        self.queued += 1

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self._failures.append(error.str())

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every copy is acknowledged; :class:`ReinjectError` if any was not."""
        left = self._producer.flush(timeout)
        if left:
            msg = f"{left} copies were not acknowledged within {timeout:g}s"
            raise ReinjectError(msg)
        if self._failures:
            failures, self._failures = self._failures, []
            msg = f"{len(failures)} copies were refused: {failures[0]}"
            raise ReinjectError(msg)
