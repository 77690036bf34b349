"""The worker's Faust app: how its producer talks to Kafka."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from processors.app import IdempotentProducer, create_app
from processors.settings import KafkaSettings, Settings, TopicSettings


async def test_the_workers_producer_is_idempotent_with_acks_all() -> None:
    app = create_app(Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")))
    producer = app.producer
    assert isinstance(producer, IdempotentProducer)
    client = producer._new_producer()  # the aiokafka client Faust would start
    try:
        assert client._txn_manager is not None, "enable_idempotence is on"
        assert client._sender._acks == -1, "acks=all"
    finally:
        await client.stop()


def test_min_insync_replicas_cannot_exceed_the_replication_factor() -> None:
    assert TopicSettings(replication_factor=3, min_insync_replicas=2).min_insync_replicas == 2
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        TopicSettings(replication_factor=1, min_insync_replicas=2)
