"""Topics are created with the configured replication factor and min.insync.replicas."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource, ConfigSource
from confluent_kafka.admin._resource import ResourceType

from processors.kafka import ensure_topics
from processors.settings import Settings, TopicSettings
from processors.topics import TopicMap


def test_new_topics_get_min_insync_replicas_and_replication_factor(settings: Settings) -> None:
    topic_settings = TopicSettings(
        prefix=settings.topics.prefix, partitions=2, replication_factor=1, min_insync_replicas=1
    )
    topics = TopicMap(topic_settings.prefix)
    ensure_topics(settings.kafka, topic_settings, topics.all_specs())

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    name = topics.exports("webhook")
    metadata = admin.list_topics(name, timeout=10).topics[name]
    assert {len(p.replicas) for p in metadata.partitions.values()} == {1}
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(30)
    entry = configs["min.insync.replicas"]
    assert entry.value == "1"
    assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "set on the topic itself"
