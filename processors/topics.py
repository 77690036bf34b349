"""Every topic the service reads or writes, declared once.

Names take the optional ``QI_TOPIC_PREFIX``. Every registered connector
(:func:`connectors.registry.registered`) has its own export, retry and dead-letter topics,
``integrations.{exports,retry,dlq}.<name>``. All topics share one partition count
(``QI_TOPIC_PARTITIONS``): the families that must line up (input, exports, retry, dead letters,
delivery records) then always do, and a tenant keyed by ``tenant_id`` lands on the same
partition number in each of them, so one worker owns all of that tenant's state.

Retention (``retention.ms``) is set per family, in days, by the ``QI_TOPIC_RETENTION_*_DAYS``
settings (:class:`~processors.settings.TopicSettings`); ``-1`` keeps a family's records
forever and ``0`` leaves its topics to the broker's default (``topics ensure`` then neither sets
nor changes it). The defaults, :data:`DEFAULT_RETENTION_DAYS`, keep no topic that holds
personal data forever:

- exports 30 days: a replay re-delivers from this history, so it is the replay window; older
  artifacts are rebuilt from the domain events by a backfill, or not at all;
- delivery records 30 days: the audit trail, as long as the API's Redis index of it
  (``QI_DELIVERY_RECORDS_RETENTION_SECONDS``, 30 days) answers for;
- dead letters 14 days: room for an operator to see, fix and redrive a bad day (the retry
  budget is 27 hours), not an archive of failed payloads;
- match review 30 days: the quarantined inbound events a tenant admin decides on;
- domain events, retry, inbound and bookmarks: the broker's default, as before (the domain
  events topic belongs to the upstream services; the others are read within hours).

Shortening a retention deletes the older records on the broker's next cleanup, for good: run
``topics ensure --dry-run`` first to see what would change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from connectors.registry import registered

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "RETENTION_BROKER_DEFAULT",
    "RETENTION_FOREVER",
    "TopicFamily",
    "TopicMap",
    "TopicSpec",
    "retention_config",
]

_DAY_MS: Final = 24 * 3600 * 1000
RETENTION_FOREVER: Final = -1
"""A family's retention in days that keeps its records forever (Kafka's ``retention.ms=-1``)."""
RETENTION_BROKER_DEFAULT: Final = 0
"""A family's retention in days that leaves its topics to the broker's default."""


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


DEFAULT_RETENTION_DAYS: Final[Mapping[TopicFamily, int]] = {
    TopicFamily.DOMAIN_EVENTS: RETENTION_BROKER_DEFAULT,
    TopicFamily.EXPORTS: 30,
    TopicFamily.RETRY: RETENTION_BROKER_DEFAULT,
    TopicFamily.DLQ: 14,
    TopicFamily.DELIVERY_RECORDS: 30,
    TopicFamily.INBOUND: RETENTION_BROKER_DEFAULT,
    TopicFamily.MATCH_REVIEW: 30,
    TopicFamily.BOOKMARKS: RETENTION_BROKER_DEFAULT,
}
"""Retention of each family in days when the settings do not say (see the module doc)."""


def retention_config(days: int) -> tuple[tuple[str, str], ...]:
    """The topic configuration that gives a family ``days`` of retention (see the module doc)."""
    if days == RETENTION_BROKER_DEFAULT:
        return ()
    if days == RETENTION_FOREVER:
        return (("retention.ms", "-1"),)
    if days < 0:
        msg = f"retention must be a number of days, {RETENTION_FOREVER} or 0, not {days}"
        raise ValueError(msg)
    return (("retention.ms", str(days * _DAY_MS)),)


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

    def all_specs(self, retention_days: Mapping[TopicFamily, int] | None = None) -> list[TopicSpec]:
        """Every topic of the service, in a stable order.

        ``retention_days`` per family (a family it leaves out, or ``None``: the
        :data:`DEFAULT_RETENTION_DAYS`); :meth:`~processors.settings.TopicSettings.retention_days`
        gives the configured ones.
        """
        days = {**DEFAULT_RETENTION_DAYS, **(retention_days or {})}

        def spec(name: str, family: TopicFamily) -> TopicSpec:
            return TopicSpec(name, family, retention_config(days[family]))

        specs = [spec(self.domain_events, TopicFamily.DOMAIN_EVENTS)]
        for connector in registered():
            specs.append(spec(self.exports(connector), TopicFamily.EXPORTS))
            specs.append(spec(self.retry(connector), TopicFamily.RETRY))
            specs.append(spec(self.dlq(connector), TopicFamily.DLQ))
        specs += [
            spec(self.invalid_events, TopicFamily.DLQ),
            spec(self.delivery_records, TopicFamily.DELIVERY_RECORDS),
            spec(self.inbound, TopicFamily.INBOUND),
            spec(self.match_review, TopicFamily.MATCH_REVIEW),
            spec(self.bookmarks, TopicFamily.BOOKMARKS),
        ]
        return specs
