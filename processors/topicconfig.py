"""``topics ensure``: create the missing topics and bring existing topics' configuration in line.

:func:`processors.kafka.ensure_topics` creates what is missing with each spec's configuration
(its retention, see :mod:`processors.topics`). A topic that already exists keeps whatever it was
created with, so a changed ``QI_TOPIC_RETENTION_*_DAYS`` would never reach it; this module reads
the existing topics' configuration (``DescribeConfigs``) and sets, with
``IncrementalAlterConfigs``, each key a spec names whose value differs. Only the keys a spec
names are touched: a family left to the broker's default (``0`` days) is not managed, so a
retention an operator set by hand on such a topic stays as it is; nor are partition counts,
replication or ``min.insync.replicas`` of existing topics changed (see
:func:`~processors.kafka.ensure_topics`).

:func:`plan_topics` only reads (``topics ensure --dry-run``); :func:`ensure_topic_configs` creates
and alters. Both report the same :class:`ConfigChange` list, and log each applied change as
``topics.config.changed`` (topic, key, old and new value: no data).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from processors.kafka import TopicEnsureResult, admin_client, ensure_topics, survey_topics
from processors.settings import KafkaSettings, TopicSettings
from processors.topics import TopicSpec

__all__ = ["ConfigChange", "TopicPlan", "ensure_topic_configs", "plan_topics"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One configuration key of one existing topic that differs from its spec."""

    topic: str
    key: str
    current: str | None
    wanted: str


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What ``topics ensure`` finds (dry run) or did: topics created, present, changed."""

    created: list[str] = field(default_factory=list)
    present: list[TopicEnsureResult] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    changes: list[ConfigChange] = field(default_factory=list)


def _config_changes(
    admin: AdminClient, specs: Sequence[TopicSpec], *, timeout: float
) -> list[ConfigChange]:
    """The keys of ``specs`` (existing topics) whose current value differs from the spec's."""
    managed = [spec for spec in specs if spec.config]
    if not managed:
        return []
    resources = {spec.name: ConfigResource(ResourceType.TOPIC, spec.name) for spec in managed}
    futures = admin.describe_configs(list(resources.values()), request_timeout=timeout)
    changes: list[ConfigChange] = []
    for spec in managed:
        entries = futures[resources[spec.name]].result(timeout)
        for key, wanted in spec.config:
            entry = entries.get(key)
            current = None if entry is None else entry.value
            if current != wanted:
                changes.append(ConfigChange(spec.name, key, current, wanted))
    return changes


def _apply(admin: AdminClient, changes: Sequence[ConfigChange], *, timeout: float) -> None:
    by_topic: dict[str, list[ConfigChange]] = {}
    for change in changes:
        by_topic.setdefault(change.topic, []).append(change)
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(c.key, c.wanted, incremental_operation=AlterConfigOpType.SET)
                for c in topic_changes
            ],
        )
        for topic, topic_changes in by_topic.items()
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout)
    for resource in resources:
        futures[resource].result(timeout)
    for change in changes:
        old, new = change.current, change.wanted
        logger.info(
            "topics.config.changed",
            extra={"topic": change.topic, "key": change.key, "old": old, "new": new},
        )


def plan_topics(
    kafka: KafkaSettings,
    topics: TopicSettings,
    specs: Sequence[TopicSpec],
    *,
    timeout: float = 30.0,
) -> TopicPlan:
    """What ``topics ensure`` would do, changing nothing: topics to create, partition counts
    that differ (``ensure`` refuses those), configuration keys it would set."""
    admin = admin_client(kafka)
    survey = survey_topics(admin, topics, specs, timeout=timeout)
    return TopicPlan(
        created=[spec.name for spec in survey.missing],
        present=survey.present,
        mismatched=survey.mismatched,
        changes=_config_changes(admin, survey.existing, timeout=timeout),
    )


def ensure_topic_configs(
    kafka: KafkaSettings,
    topics: TopicSettings,
    specs: Sequence[TopicSpec],
    *,
    timeout: float = 30.0,
) -> TopicPlan:
    """Create the missing topics (:func:`~processors.kafka.ensure_topics`, which raises
    :class:`~processors.kafka.TopicPartitionMismatchError` first if a partition count differs),
    then set each configuration key of the existing topics that differs from its spec."""
    results = ensure_topics(kafka, topics, specs, timeout=timeout)
    created = {result.name for result in results if result.created}
    plan = TopicPlan(
        created=[result.name for result in results if result.created],
        present=[result for result in results if not result.created],
    )
    admin = admin_client(kafka)
    changes = _config_changes(
        admin, [spec for spec in specs if spec.name not in created], timeout=timeout
    )
    if changes:
        _apply(admin, changes, timeout=timeout)
    plan.changes.extend(changes)
    return plan
