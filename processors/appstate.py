"""What the API's routers read from ``app.state``: the Redis client and the settings.

:func:`processors.api.create_api` puts both there; a router's dependency builds its service or
repository from :func:`api_state` (one place checks that the app was built that way).

:func:`bookmark_producer`: the Kafka producer of the inbound review API (it produces the
bookmark a review's resolution creates), made on first use and kept on ``app.state`` (an app
that never resolves a review never connects to Kafka).
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, Message
from fastapi import Request
from redis.asyncio import Redis

from processors.kafka import producer as kafka_producer
from processors.settings import KafkaSettings, Settings

__all__ = ["AsyncProducer", "ProduceError", "api_state", "bookmark_producer"]


def api_state(request: Request) -> tuple[Redis, Settings]:
    """The app's Redis client and settings; raises ``RuntimeError`` if the app has none."""
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return redis, settings


class ProduceError(Exception):
    """The broker did not acknowledge a record (``code``: librdkafka's error name)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class AsyncProducer:
    """A confluent-kafka producer whose :meth:`produce` returns once the broker acknowledged.

    Idempotent with ``acks=all`` (:func:`processors.kafka.producer`); a record not acknowledged
    within ``timeout_seconds`` raises :class:`ProduceError`.
    """

    def __init__(self, kafka: KafkaSettings, *, timeout_seconds: float = 10.0) -> None:
        millis = int(timeout_seconds * 1000)
        self._producer = kafka_producer(kafka, **{"delivery.timeout.ms": millis, "linger.ms": 0})
        self._timeout = timeout_seconds

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def delivered(error: KafkaError | None, _message: Message) -> None:
            def settle() -> None:
                if done.done():
                    return
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(ProduceError(str(error.name())))

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
        except BufferError as exc:
            raise ProduceError("queue_full") from exc
        deadline = loop.time() + self._timeout + 5
        while not done.done():
            await asyncio.to_thread(self._producer.poll, 0.1)
            if loop.time() > deadline:
                raise ProduceError("timed_out")
        await done


def bookmark_producer(request: Request) -> AsyncProducer:
    """The app's bookmark producer (see the module docstring)."""
    producer = getattr(request.app.state, "bookmark_producer", None)
    if not isinstance(producer, AsyncProducer):
        _, settings = api_state(request)
        producer = AsyncProducer(settings.kafka)
        request.app.state.bookmark_producer = producer
    return producer
