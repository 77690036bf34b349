"""``topics ensure`` creates topics with the configured retention and brings existing topics in
line (``--dry-run`` only shows it), read back from the broker with ``DescribeConfigs``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource, ConfigSource
from confluent_kafka.admin._resource import ResourceType

from processors.cli import main
from processors.settings import Settings, get_settings
from processors.topics import TopicFamily, TopicMap

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings point at this test's topic prefix (re-read by every ``main``)."""
    monkeypatch.setenv("QI_KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("QI_TOPIC_PREFIX", settings.topics.prefix)
    monkeypatch.setenv("QI_TOPIC_PARTITIONS", str(settings.topics.partitions))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _ensure(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return main(["topics", "ensure", *args])


def _retention(admin: AdminClient, names: list[str]) -> dict[str, str]:
    resources = {name: ConfigResource(ResourceType.TOPIC, name) for name in names}
    futures = admin.describe_configs(list(resources.values()))
    return {
        name: futures[resource].result(30)["retention.ms"].value
        for name, resource in resources.items()
    }


def _settled(admin: AdminClient, names: list[str], last: str, value: str) -> dict[str, str]:
    """The retention of ``names`` once the broker shows ``value`` on ``last``, the last topic
    created or altered (the broker applies both through its metadata log, a moment after it
    accepted them, so a read straight away may not see them yet)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            read = _retention(admin, names)
        except KafkaException:
            read = {}
        if read.get(last) == value or time.monotonic() > deadline:
            return read
        time.sleep(0.2)


def _line(out: str, action: str, topic: str) -> str:
    """The one output line that says ``action`` about ``topic``."""
    lines = [line for line in out.splitlines() if line.startswith(action) and f" {topic} " in line]
    assert len(lines) == 1, out
    return lines[0]


def _family_topics(settings: Settings) -> dict[TopicFamily, list[str]]:
    found: dict[TopicFamily, list[str]] = {}
    for spec in TopicMap(settings.topics.prefix).all_specs():
        found.setdefault(spec.family, []).append(spec.name)
    return found


@pytest.mark.usefixtures("cli_env")
def test_ensure_creates_with_retention_then_changes_it_and_dry_run_changes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    families = _family_topics(settings)
    exports, records = families[TopicFamily.EXPORTS], families[TopicFamily.DELIVERY_RECORDS]
    dead_letters, review = families[TopicFamily.DLQ], families[TopicFamily.MATCH_REVIEW]
    watched = exports + records + dead_letters + review

    # Created with the documented defaults: nothing of these is kept forever.
    assert _ensure(monkeypatch) == 0
    created = _settled(admin, watched, review[-1], str(30 * DAY_MS))
    assert {created[n] for n in exports} == {str(30 * DAY_MS)}
    assert {created[n] for n in records} == {str(30 * DAY_MS)}
    assert {created[n] for n in dead_letters} == {str(14 * DAY_MS)}
    assert {created[n] for n in review} == {str(30 * DAY_MS)}
    assert "-1" not in created.values()
    capsys.readouterr()

    # A changed setting, dry run: reported, nothing changed on the broker.
    env = {"QI_TOPIC_RETENTION_EXPORTS_DAYS": "7", "QI_TOPIC_RETENTION_DLQ_DAYS": "3"}
    assert _ensure(monkeypatch, "--dry-run", **env) == 0
    out = capsys.readouterr().out
    for name in exports + dead_letters:
        assert _line(out, "would set", name).endswith(f"(was {created[name]})")
    assert f"{len(exports) + len(dead_letters)} configuration change(s) (dry run)" in out
    assert _retention(admin, watched) == created

    # The same for real: exports and dead letters change, the other families stay.
    assert _ensure(monkeypatch, **env) == 0
    out = capsys.readouterr().out
    line = _line(out, "set", exports[0])
    assert line.split()[2:] == [f"retention.ms={7 * DAY_MS}", "(was", f"{30 * DAY_MS})"]
    changed = _settled(admin, watched, exports[-1], str(7 * DAY_MS))
    assert {changed[n] for n in exports} == {str(7 * DAY_MS)}
    assert {changed[n] for n in dead_letters} == {str(3 * DAY_MS)}
    assert {changed[n] for n in records + review} == {str(30 * DAY_MS)}

    # Idempotent: a second run changes nothing.
    assert _ensure(monkeypatch) == 0
    assert "0 configuration change(s)" in capsys.readouterr().out
    assert _retention(admin, watched) == changed


@pytest.mark.usefixtures("cli_env")
def test_forever_and_broker_default_are_explicit_choices(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    families = _family_topics(settings)
    env = {"QI_TOPIC_RETENTION_DELIVERY_RECORDS_DAYS": "-1", "QI_TOPIC_RETENTION_RETRY_DAYS": "0"}
    assert _ensure(monkeypatch, **env) == 0
    records = families[TopicFamily.DELIVERY_RECORDS]
    read = _settled(admin, records + families[TopicFamily.RETRY], records[-1], "-1")
    assert {read[n] for n in records} == {"-1"}
    resource = ConfigResource(ResourceType.TOPIC, families[TopicFamily.RETRY][0])
    entry = admin.describe_configs([resource])[resource].result(30)["retention.ms"]
    assert entry.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "left to the broker's default"


@pytest.mark.usefixtures("cli_env")
def test_invalid_retention_is_a_usage_error_and_creates_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    assert _ensure(monkeypatch, QI_TOPIC_RETENTION_EXPORTS_DAYS="-5") == 2
    assert "retention_exports_days" in capsys.readouterr().err
    listed = admin.list_topics(timeout=10).topics
    assert not [name for name in listed if name.startswith(settings.topics.prefix)]


@pytest.mark.usefixtures("cli_env")
def test_dry_run_on_a_new_cluster_lists_the_topics_and_creates_none(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    names = [spec.name for spec in TopicMap(settings.topics.prefix).all_specs()]
    assert _ensure(monkeypatch, "--dry-run") == 0
    out = capsys.readouterr().out
    for name in names:
        _line(out, "would create", name)
    listed = admin.list_topics(timeout=10).topics
    assert not [name for name in listed if name.startswith(settings.topics.prefix)]
