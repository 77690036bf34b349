"""The one Faust application of the worker.

Built by :func:`create_app` from the settings (no import-time app, no autodiscovery): the CLI
builds it and hands it to a Faust worker; tests build their own with their own topic prefix.

Faust settings that matter for correctness:

- ``consumer_auto_offset_reset=earliest``: a new consumer group starts at the beginning;
- the producer is idempotent with ``acks=all`` (:class:`IdempotentProducer`): a produce the
  client retries after a lost acknowledgement is written once, in order, and a write is
  acknowledged only once all in-sync replicas (at least ``QI_TOPIC_MIN_INSYNC_REPLICAS``) have
  it. Faust's settings only turn idempotence on for transactions, so the app builds its own
  producer. ``producer_linger``
  of 5 ms lets records produced by concurrent lanes share requests (measured with
  ``bench/delivery.py``; per-record requests spent a third of the worker's time in writes);
- Faust commits a partition's offset only past events the agent acknowledged, and flushes the
  producer before committing. Agents acknowledge a batch only after every record it produced
  was acknowledged by the broker, so a crash at any point loses nothing (records after the last
  commit are routed again, with the same idempotency keys and delivery ids);
- no web server, no leader topic, in-memory table store (there are no tables);
- ``broker_credentials`` from ``QI_KAFKA_SECURITY_PROTOCOL`` and the SASL and TLS settings
  (:func:`broker_credentials`), so Faust's consumer, producer and admin client authenticate
  like the CLI's clients.

Once the worker has run for ``QI_WORKER_GC_FREEZE_AFTER_SECONDS`` (its consumers joined, sinks
open), its long-lived objects are frozen out of the garbage collector's full collections (see
:mod:`processors.gcpause`): those collections were the worker's whole p99 latency tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import Producer as AIOKafkaFaustProducer
from faust.types import ProducerT
from faust.types.auth import CredentialsT

from processors.agents.deliver import register_delivery_agents
from processors.agents.route import register_route_agent
from processors.gcpause import freeze_long_lived_objects, observe_gc_pauses
from processors.kafka import ssl_context
from processors.settings import KafkaSettings, Settings
from processors.topics import TopicMap

__all__ = ["IdempotentProducer", "WorkerApp", "broker_credentials", "create_app", "raw_topic"]

logger = logging.getLogger(__name__)


class IdempotentProducer(AIOKafkaFaustProducer):
    """Faust's aiokafka producer with ``enable_idempotence=True`` and ``acks=all``."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class WorkerApp(faust.App):
    """The Faust app, producing through :class:`IdempotentProducer`."""

    def _new_producer(self) -> ProducerT:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)


def _broker_url(bootstrap_servers: str) -> str:
    hosts = [host.strip() for host in bootstrap_servers.split(",") if host.strip()]
    return ";".join(f"kafka://{host}" for host in hosts)


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's credentials for ``QI_KAFKA_SECURITY_PROTOCOL`` (``None``: plaintext)."""
    context = ssl_context(kafka)
    if kafka.uses_sasl:
        password = kafka.sasl_password
        return SASLCredentials(
            username=kafka.sasl_username,
            password=None if password is None else password.get_secret_value(),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic whose keys and values stay bytes: decoding is the agents' business."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )


def create_app(settings: Settings) -> faust.App:
    """The worker's app with every agent registered."""
    app = WorkerApp(
        settings.worker.app_id,
        broker=_broker_url(settings.kafka.bootstrap_servers),
        broker_client_id=settings.kafka.client_id,
        broker_credentials=broker_credentials(settings.kafka),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # 5 ms: concurrent lanes' records share produce requests
        producer_compression_type="lz4",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.routing.batch_size * 2),
        # never wait for agents to acknowledge what they hold before giving partitions up:
        # the delivery agents drop what has not started instead (processors.agents.deliver)
        stream_wait_empty=False,
    )
    topics = TopicMap(settings.topics.prefix)
    register_route_agent(app, source=raw_topic(app, topics.domain_events), settings=settings)
    for connector in settings.worker.delivery_connectors:
        register_delivery_agents(app, connector=connector, settings=settings)
    observe_gc_pauses()
    freeze_after = settings.worker.gc_freeze_after_seconds
    if freeze_after > 0:

        async def freeze_heap() -> None:
            await asyncio.sleep(freeze_after)
            frozen = freeze_long_lived_objects()
            logger.info("gc_frozen", extra={"objects": frozen})

        app.task(freeze_heap)

    return app
