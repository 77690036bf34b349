"""Every topic the service reads or writes, declared once.

Names take the optional ``QI_TOPIC_PREFIX``. Every registered connector
(:func:`connectors.registry.registered`) has its own export, retry and dead-letter topics,
``integrations.{exports,retry,dlq}.<name>``. All topics share one partition count
(``QI_TOPIC_PARTITIONS``): the families that must line up (input, exports, retry, dead letters,
delivery records) then always do, and a tenant keyed by ``tenant_id`` lands on the same
partition number in each of them, so one worker owns all of that tenant's state.

Retention: exported artifacts and delivery records are kept forever (replay and audit read
them; nothing rewrites them); dead letters for 30 days; everything else uses the broker default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectors.registry import registered

__all__ = [
    "TopicFamily",
    "TopicMap",
    "TopicSpec",
]

_FOREVER = "-1"
_THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)


class TopicFamily(StrEnum):
    """What a topic is for; used for grouping in ``topics ensure`` output and metrics."""

    DOMAIN_EVENTS = "domain-events"
    EXPORTS = "exports"
    RETRY = "retry"
    DLQ = "dlq"
    DELIVERY_RECORDS = "delivery-records"
    INBOUND = "inbound"
    MATCH_REVIEW = "match-review"
    BOOKMARKS = "bookmarks"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its full name, family and topic-level configuration."""

    name: str
    family: TopicFamily
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TopicMap:
    """Topic names under one prefix."""

    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def domain_events(self) -> str:
        return self._name("queast.domain-events")

    def exports(self, connector: str) -> str:
        return self._name(f"integrations.exports.{connector}")

    def retry(self, connector: str) -> str:
        return self._name(f"integrations.retry.{connector}")

    def dlq(self, connector: str) -> str:
        return self._name(f"integrations.dlq.{connector}")

    @property
    def invalid_events(self) -> str:
        return self.dlq("invalid-events")

    @property
    def delivery_records(self) -> str:
        return self._name("integrations.delivery-records")

    @property
    def inbound(self) -> str:
        return self._name("integrations.inbound")

    @property
    def match_review(self) -> str:
        return self._name("integrations.match-review")

    @property
    def bookmarks(self) -> str:
        return self._name("queast.bookmarks")

    def all_specs(self) -> list[TopicSpec]:
        """Every topic of the service, in a stable order."""
        forever = (("retention.ms", _FOREVER),)
        thirty_days = (("retention.ms", _THIRTY_DAYS_MS),)
        specs = [TopicSpec(self.domain_events, TopicFamily.DOMAIN_EVENTS)]
        for connector in registered():
            specs.append(TopicSpec(self.exports(connector), TopicFamily.EXPORTS, forever))
            specs.append(TopicSpec(self.retry(connector), TopicFamily.RETRY))
            specs.append(TopicSpec(self.dlq(connector), TopicFamily.DLQ, thirty_days))
        specs += [
            TopicSpec(self.invalid_events, TopicFamily.DLQ, thirty_days),
            TopicSpec(self.delivery_records, TopicFamily.DELIVERY_RECORDS, forever),
            TopicSpec(self.inbound, TopicFamily.INBOUND),
            TopicSpec(self.match_review, TopicFamily.MATCH_REVIEW, forever),
            TopicSpec(self.bookmarks, TopicFamily.BOOKMARKS),
        ]
        return specs
