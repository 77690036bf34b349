"""The lag exporter's rounds: published, kept through failures, dropped when stale, never two
samples at once (the probe is a fake; the real broker is in tests/integration)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import CollectorRegistry, Gauge

from processors.consumerlag import ConsumerLagExporter, consumed_topics
from processors.settings import Settings, TopicSettings, WorkerSettings

GROUP = "g1"


class _Probe:
    def __init__(self) -> None:
        self.answers: list[dict[tuple[str, int], int] | Exception] = []
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.finished = threading.Event()
        self.closed = False

    @property
    def group(self) -> str:
        return GROUP

    def sample(self) -> dict[tuple[str, int], int]:
        self.calls += 1
        self.release.wait(10)
        self.finished.set()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _gauge() -> tuple[Gauge, CollectorRegistry]:
    registry = CollectorRegistry()
    return Gauge("qi_consumer_lag", "lag", ["group", "topic", "partition"], registry=registry), (
        registry
    )


def _values(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get("group") == GROUP
    }


async def test_a_sample_is_published_and_a_vanished_partition_loses_its_series() -> None:
    gauge, registry = _gauge()
    probe = _Probe()
    probe.answers = [{("a", 0): 5, ("a", 1): 0, ("b", 0): 2}, {("a", 0): 7, ("a", 1): 1}]
    exporter = ConsumerLagExporter(probe, interval=15, gauge=gauge)
    assert await exporter.refresh()
    assert _values(registry) == {("a", "0"): 5, ("a", "1"): 0, ("b", "0"): 2}
    assert await exporter.refresh()
    assert _values(registry) == {("a", "0"): 7, ("a", "1"): 1}


async def test_failures_keep_the_last_values_until_they_are_stale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gauge, registry = _gauge()
    clock = _Clock()
    probe = _Probe()
    probe.answers = [{("a", 0): 5}, RuntimeError("broker"), RuntimeError("broker")]
    exporter = ConsumerLagExporter(probe, interval=15, gauge=gauge, clock=clock)
    assert await exporter.refresh()
    clock.now = 299.0
    assert not await exporter.refresh()
    assert _values(registry) == {("a", "0"): 5}
    clock.now = 300.0
    assert not await exporter.refresh()
    assert _values(registry) == {}
    events = [r.getMessage() for r in caplog.records if r.name == "processors.consumerlag"]
    assert events == [
        "metrics.consumer_lag.sample_failed",
        "metrics.consumer_lag.sample_failed",
        "metrics.consumer_lag.dropped",
    ]


async def test_a_slow_sample_is_waited_for_not_duplicated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gauge, registry = _gauge()
    probe = _Probe()
    probe.answers = [{("a", 0): 3}]
    probe.release.clear()
    exporter = ConsumerLagExporter(probe, interval=15, timeout=0.05, gauge=gauge)
    assert not await exporter.refresh()
    assert not await exporter.refresh()
    assert probe.calls == 1  # the second round waited for the first sample, started none
    probe.release.set()
    assert await asyncio.to_thread(probe.finished.wait, 10)
    assert await exporter.refresh()  # the same sample, finished late: published
    assert probe.calls == 1
    assert _values(registry) == {("a", "0"): 3}
    assert [r.getMessage() for r in caplog.records if r.name == "processors.consumerlag"] == [
        "metrics.consumer_lag.sample_slow"
    ] * 2


def test_the_topics_are_those_the_worker_consumes() -> None:
    settings = Settings(
        topics=TopicSettings(prefix="p."),
        worker=WorkerSettings(delivery_connectors=("webhook", "hubspot")),
    )
    assert consumed_topics(settings) == [
        "p.queast.domain-events",
        "p.integrations.exports.webhook",
        "p.integrations.retry.webhook",
        "p.integrations.exports.hubspot",
        "p.integrations.retry.hubspot",
    ]


def test_the_interval_is_at_least_a_second() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from processors.settings import MetricsSettings  # noqa: PLC0415

    with pytest.raises(ValidationError):
        MetricsSettings(lag_interval_seconds=0.1)
    assert MetricsSettings().lag_interval_seconds == 15.0
