"""What the API's routers read from ``app.state``: the Redis client, the settings, and the
releaser of records held for a match review.

:func:`processors.api.create_api` puts them there; a router's dependency builds its service or
repository from :func:`api_state` (one place checks that the app was built that way), and the
match-review router takes :func:`api_releaser`.

The API process has one Kafka producer (:class:`ApiProducer`), made on first use (an API that
never releases a held record never connects to Kafka) and flushed when the app shuts down.
"""

from __future__ import annotations

import threading

from confluent_kafka import Producer
from fastapi import Request
from redis.asyncio import Redis

from processors.identity.held import Releaser
from processors.kafka import producer
from processors.settings import KafkaSettings, Settings

__all__ = ["ApiProducer", "api_releaser", "api_state"]


def api_state(request: Request) -> tuple[Redis, Settings]:
    """The app's Redis client and settings; raises ``RuntimeError`` if the app has none."""
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return redis, settings


def api_releaser(request: Request) -> Releaser | None:
    """The app's releaser of held records (``None``: the app releases nothing)."""
    releaser: Releaser | None = getattr(request.app.state, "releaser", None)
    return releaser


class ApiProducer:
    """One Kafka producer per API process: made on first use, flushed on shutdown."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = producer(self._kafka)
            return self._producer

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is still queued; returns how many records were not acknowledged."""
        with self._lock:
            made, self._producer = self._producer, None
        return 0 if made is None else int(made.flush(timeout))
