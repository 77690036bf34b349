from __future__ import annotations

import pytest

from connectors.base import RateLimit
from connectors.registry import CONNECTORS, ConnectorSpec, UnknownConnectorError, get_connector
from connectors.webhook import WebhookConnectionConfig, WebhookSink


def test_webhook_is_registered() -> None:
    spec = get_connector("webhook")
    assert spec.sink_class is WebhookSink
    assert spec.config_class is WebhookConnectionConfig
    assert spec.max_batch_size == 1
    assert spec.default_rate_limit == RateLimit(rate=10, per_seconds=1)


def test_every_spec_is_keyed_by_its_name() -> None:
    assert all(name == spec.name for name, spec in CONNECTORS.items())


def test_unknown_connector() -> None:
    with pytest.raises(UnknownConnectorError, match="salesforce"):
        get_connector("salesforce")


def test_the_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        CONNECTORS["x"] = get_connector("webhook")  # type: ignore[index]


def test_a_spec_must_agree_with_its_sink() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        ConnectorSpec(
            name="webhook",
            sink_class=WebhookSink,
            config_class=WebhookConnectionConfig,
            max_batch_size=100,
            default_rate_limit=WebhookSink.default_rate_limit,
        )


def test_partner_connectors_are_registered_with_their_bulk_limits() -> None:
    assert get_connector("hubspot").max_batch_size == 100
    assert get_connector("pipedrive").max_batch_size == 1
    assert set(CONNECTORS) == {"webhook", "hubspot", "pipedrive"}
