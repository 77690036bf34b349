"""The inbound review API's Kafka producer: the bookmark a review's resolution creates.

Made on the first resolve and kept on ``app.state.bookmark_producer`` (an API that never
resolves a review never connects to Kafka). It is a producer of its own rather than a shared
one of the API so that this module owns it whole; it holds nothing between calls (every
produce waits for its acknowledgement), so it needs no flush at shutdown.
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, Message
from fastapi import Request

from processors.appstate import api_state
from processors.kafka import producer as kafka_producer
from processors.settings import KafkaSettings

__all__ = ["AsyncProducer", "ProduceError", "bookmark_producer"]


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
