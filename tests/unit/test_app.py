"""The worker's Faust app: how its producer talks to Kafka."""

from __future__ import annotations

import pytest
from faust.types import TP, Message
from pydantic import ValidationError

from processors.app import IdempotentProducer, SafeCommitConsumer, create_app
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


TP0 = TP("integrations.exports.webhook", 0)


def _consumer(*, committed: int | None, acked: list[int]) -> SafeCommitConsumer:
    app = create_app(Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")))
    consumer = app.consumer
    assert isinstance(consumer, SafeCommitConsumer)
    consumer._committed_offset[TP0] = committed
    consumer._acked[TP0] = list(acked)
    consumer._acked_index[TP0] = set(acked)
    return consumer


def _message(offset: int, *, generation: int = 1) -> Message:
    return Message(
        TP0.topic, TP0.partition, offset, 0.0, 0, None, None, b"", None, generation_id=generation
    )


async def test_nothing_is_committed_while_the_committed_offset_itself_is_unacknowledged() -> None:
    # Faust's own consumer commits 15 here, past offset 10 (held in a lane, say)
    consumer = _consumer(committed=10, acked=[11, 12, 13, 14])
    assert consumer._filter_committable_offsets([TP0]) == {}
    consumer._acked[TP0].append(10)
    assert consumer._filter_committable_offsets([TP0]) == {TP0: 15}


async def test_a_new_group_commits_only_up_to_the_lowest_unacknowledged_message() -> None:
    # nothing committed yet: Faust's own consumer commits 10 here, past 3 (still held)
    consumer = _consumer(committed=None, acked=[0, 1, 2, 4, 5, 6, 7, 8, 9])
    held = _message(3)
    consumer._unacked_messages.add(held)
    assert consumer._filter_committable_offsets([TP0]) == {TP0: 3}
    consumer._committed_offset[TP0] = 3
    assert consumer._filter_committable_offsets([TP0]) == {}
    held.acked = True
    consumer._acked[TP0].append(3)
    assert consumer._filter_committable_offsets([TP0]) == {TP0: 10}


async def test_an_unacknowledged_message_caps_the_commit_even_inside_an_acknowledged_run() -> None:
    consumer = _consumer(committed=None, acked=[5, 6, 7, 8])
    held = _message(2)  # Faust tracks messages weakly: whoever holds one keeps it tracked
    consumer._unacked_messages.add(held)
    assert consumer._filter_committable_offsets([TP0]) == {}
    assert consumer._acked[TP0] == [5, 6, 7, 8], "acknowledged offsets are kept for later"


async def test_acks_of_messages_read_before_their_partition_was_revoked_are_ignored() -> None:
    consumer = _consumer(committed=None, acked=[])
    consumer._fenced = {TP0: 4}
    old, new = _message(7, generation=4), _message(7, generation=5)
    consumer._unacked_messages.add(old)
    assert consumer.ack(old) is False
    assert old.acked
    assert consumer._acked[TP0] == []
    assert old not in consumer._unacked_messages
    assert not new.acked
