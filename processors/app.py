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
- a partition's offset is committed only past events the agents acknowledged, and the
  producer is flushed before committing. Agents acknowledge a batch only after every record it
  produced was acknowledged by the broker, so a crash at any point loses nothing (records after
  the last commit are routed again, with the same idempotency keys and delivery ids). Faust's
  own consumer can commit past an unacknowledged record (see :class:`SafeCommitConsumer`), so
  the app consumes through one that cannot;
- ``stream_wait_empty=False``: in a rebalance and at shutdown, Faust does not wait for every
  record the agents took to be acknowledged. The delivery agents drop what they hold of
  revoked partitions instead (see :mod:`processors.agents.deliver`); a routing batch in flight
  finishes, and its acknowledgement no longer counts (:class:`SafeCommitConsumer`): the new
  owner routes it again with the same idempotency keys. At shutdown the consumer commits what
  was acknowledged and nothing past what was not;
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
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any

import faust
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaFaustProducer
from faust.types import TP, ConsumerT, Message, ProducerT
from faust.types.auth import CredentialsT
from faust.types.tuples import ack_lock
from faust.utils.functional import consecutive_numbers

from processors.agents.deliver import register_delivery_agents
from processors.agents.inbound import register_inbound_agents
from processors.agents.route import register_route_agent
from processors.agents.streams import raw_topic
from processors.consumerlag import register_consumer_lag
from processors.gcpause import freeze_long_lived_objects, observe_gc_pauses
from processors.kafka import ssl_context
from processors.settings import KafkaSettings, Settings
from processors.topics import TopicMap

__all__ = [
    "IdempotentProducer",
    "SafeCommitConsumer",
    "WorkerApp",
    "broker_credentials",
    "create_app",
    "worker_app",
]

logger = logging.getLogger(__name__)


class IdempotentProducer(AIOKafkaFaustProducer):
    """Faust's aiokafka producer with ``enable_idempotence=True`` and ``acks=all``."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class SafeCommitConsumer(AIOKafkaFaustConsumer):
    """Faust's aiokafka consumer, never committing past a record not yet acknowledged.

    Faust's own choice of the offset to commit (``Consumer._new_offset``) finds the first run
    of acknowledged offsets and commits past it, checking only that the run starts less than
    two offsets after the committed one, and not at all while nothing was committed (a new
    group, or a committed offset of 0). So with offset ``C`` committed, ``C`` held in a
    lane and ``C+1`` acknowledged, it commits ``C+2``; and a new group commits past every
    record still held below its first acknowledged run. This consumer commits the end of
    that run only if it starts exactly at the committed offset, and never past the lowest
    offset of a message Faust still tracks as unacknowledged in the partition.

    Acknowledgements of messages read before their partition was revoked (a lane's batch
    finishing after a rebalance) are ignored: the partition's bookkeeping starts again at
    the rebalance and its owner, perhaps this worker again, reads those records again. A
    message is known by the consumer generation it was read in (Faust stamps each one): the
    group's generation only grows while the group exists, which it does while this worker
    is in it.
    """

    _fenced: Mapping[TP, int] = MappingProxyType({})
    """Per partition: the consumer generation it was last revoked in."""
    _held_offsets: Mapping[TP, int] = MappingProxyType({})
    """Per partition, while choosing offsets to commit: the lowest unacknowledged offset."""

    async def on_partitions_revoked(self, revoked: AbstractSet[TP]) -> None:
        generation = self.app.consumer_generation_id
        self._fenced = {**self._fenced, **dict.fromkeys(revoked, generation)}
        await super().on_partitions_revoked(revoked)

    def ack(self, message: Message) -> bool:
        fence = self._fenced.get(message.tp)
        generation = message.generation_id
        if fence is not None and generation is not None and generation <= fence:
            with ack_lock:
                message.acked = True
                self._unacked_messages.discard(message)
            return False
        return bool(super().ack(message))

    def _lowest_unacked(self) -> dict[TP, int]:
        lowest: dict[TP, int] = {}
        for message in list(self._unacked_messages):
            if not message.acked:
                tp = message.tp
                lowest[tp] = min(lowest.get(tp, message.offset), message.offset)
        return lowest

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        self._held_offsets = self._lowest_unacked()
        try:
            return dict(super()._filter_committable_offsets(tps))
        finally:
            self._held_offsets = MappingProxyType({})

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:  # offsets the broker never returned (as Faust: they count as acknowledged)
            last = max(acked)
            spans = sorted(gaps.overlap(0, last), key=lambda span: span.begin)
            if spans:
                skipped = [n for span in spans for n in range(span.begin, span.end)]
                acked.extend(skipped)
                gaps.chop(0, max(skipped[-1], last + 1))
        acked.sort()
        committed = self._committed_offset[tp]
        if committed is not None and acked[0] > committed:
            return None  # the committed offset itself is not acknowledged yet
        run = next(consecutive_numbers(acked))
        held = self._held_offsets.get(tp)
        if held is not None:
            run = [n for n in run if n < held]
            if not run:
                return None
        acked[: len(run)] = []
        self._acked_index[tp].difference_update(run)
        return run[-1] + 1


class WorkerApp(faust.App):
    """The Faust app, producing through :class:`IdempotentProducer` and consuming through
    :class:`SafeCommitConsumer`."""

    def _new_producer(self) -> ProducerT:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_consumer(self) -> ConsumerT:
        return SafeCommitConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )


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


def worker_app(settings: Settings) -> faust.App:
    """The worker's app with its Faust settings and no agent: :func:`create_app` registers
    the agents on it (``bench/faust_relay.py`` registers a bare relay, to measure what Faust
    alone costs with the same settings)."""
    return WorkerApp(
        settings.worker.app_id,
        broker=_broker_url(settings.kafka.bootstrap_servers),
        broker_client_id=settings.kafka.client_id,
        broker_credentials=broker_credentials(settings.kafka),
        store="memory://",
        datadir=settings.worker.data_dir,  # Faust creates it at start, even with no tables
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


def create_app(settings: Settings) -> faust.App:
    """The worker's app with every agent registered."""
    app = worker_app(settings)
    topics = TopicMap(settings.topics.prefix)
    register_route_agent(app, source=raw_topic(app, topics.domain_events), settings=settings)
    for connector in settings.worker.delivery_connectors:
        register_delivery_agents(app, connector=connector, settings=settings)
    register_inbound_agents(app, settings=settings)
    register_consumer_lag(app, settings)
    observe_gc_pauses()
    freeze_after = settings.worker.gc_freeze_after_seconds
    if freeze_after > 0:

        async def freeze_heap() -> None:
            await asyncio.sleep(freeze_after)
            frozen = freeze_long_lived_objects()
            logger.info("gc_frozen", extra={"objects": frozen})

        app.task(freeze_heap)

    return app
