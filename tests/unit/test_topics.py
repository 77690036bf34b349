"""Topic specs carry each family's configured retention; nothing holding data is kept forever."""

from __future__ import annotations

import pytest

from processors.settings import TopicSettings
from processors.topics import DEFAULT_RETENTION_DAYS, TopicFamily, TopicMap, retention_config

DAY_MS = 24 * 3600 * 1000


def test_default_specs_keep_no_family_forever() -> None:
    specs = TopicMap("p.").all_specs()
    assert all(("retention.ms", "-1") not in spec.config for spec in specs)
    by_family = {spec.family: dict(spec.config).get("retention.ms") for spec in specs}
    assert by_family[TopicFamily.EXPORTS] == str(30 * DAY_MS)
    assert by_family[TopicFamily.DELIVERY_RECORDS] == str(30 * DAY_MS)
    assert by_family[TopicFamily.DLQ] == str(14 * DAY_MS)
    assert by_family[TopicFamily.RETRY] is None, "the broker's default, as before"


def test_settings_name_every_family_and_reach_the_specs() -> None:
    topic_settings = TopicSettings(retention_exports_days=9, retention_dlq_days=-1)
    days = topic_settings.retention_days()
    assert set(days) == set(TopicFamily) == set(DEFAULT_RETENTION_DAYS)
    specs = TopicMap("p.").all_specs(days)
    exports = [spec for spec in specs if spec.family is TopicFamily.EXPORTS]
    assert exports
    assert {dict(spec.config)["retention.ms"] for spec in exports} == {str(9 * DAY_MS)}
    dead_letters = [spec for spec in specs if spec.family is TopicFamily.DLQ]
    assert {spec.config for spec in dead_letters} == {(("retention.ms", "-1"),)}


def test_retention_settings_refuse_what_kafka_would_misread() -> None:
    with pytest.raises(ValueError, match="retention_exports_days"):
        TopicSettings(retention_exports_days=-2)
    with pytest.raises(ValueError, match="retention must be"):
        retention_config(-3)
    assert retention_config(0) == ()
