from __future__ import annotations

import pytest

from connectors.base import RateLimit
from connectors.hubspot.api import HubSpotOptions
from connectors.registry import (
    CONNECTORS,
    ConnectorSpec,
    UnknownConnectorError,
    extended,
    get_connector,
    registered,
    webhook_copy_carrier,
)
from connectors.webhook import WebhookConnectionConfig, WebhookSink
from processors.settings import PartnerSettings, WorkerSettings
from processors.tenants.models import Connector
from processors.topics import TopicMap


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


def _extra(name: str = "extra") -> ConnectorSpec:
    class ExtraSink(WebhookSink):
        pass

    ExtraSink.name = name
    return ConnectorSpec(
        name=name,
        sink_class=ExtraSink,
        config_class=WebhookConnectionConfig,
        max_batch_size=1,
        default_rate_limit=WebhookSink.default_rate_limit,
    )


def test_extended_adds_connectors_for_the_block_only() -> None:
    extra = _extra()
    with extended(extra) as current:
        assert get_connector("extra") is extra
        assert set(current) == {"webhook", "hubspot", "pipedrive", "extra"}
        assert "p.integrations.exports.extra" in {t.name for t in TopicMap("p.").all_specs()}
        assert Connector("extra") is Connector.EXTRA
    assert "extra" not in registered()
    assert set(CONNECTORS) == {"webhook", "hubspot", "pipedrive"}
    with pytest.raises(UnknownConnectorError):
        get_connector("extra")


def test_extended_refuses_a_name_already_registered() -> None:
    with pytest.raises(ValueError, match="already registered"):
        extended(_extra("webhook")).__enter__()
    assert registered() is CONNECTORS


def test_exactly_one_connector_carries_webhook_copies() -> None:
    assert webhook_copy_carrier().name == "webhook"
    assert [s.name for s in CONNECTORS.values() if s.carries_webhook_copies] == ["webhook"]


def test_workers_deliver_for_every_registered_connector_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QI_WORKER_DELIVERY_CONNECTORS", raising=False)
    assert WorkerSettings().delivery_connectors == ("webhook", "hubspot", "pipedrive")
    monkeypatch.setenv("QI_WORKER_DELIVERY_CONNECTORS", '["webhook"]')
    assert WorkerSettings().delivery_connectors == ("webhook",)


def test_base_urls_are_read_for_every_connector_whose_config_has_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QI_HUBSPOT_BASE_URL", "http://127.0.0.1:8910")
    monkeypatch.setenv("QI_PIPEDRIVE_BASE_URL", "http://127.0.0.1:8920")
    monkeypatch.setenv("QI_WEBHOOK_BASE_URL", "http://127.0.0.1:8930")
    partners = PartnerSettings()
    assert partners.base_url("hubspot") == "http://127.0.0.1:8910"
    assert partners.base_url("pipedrive") == "http://127.0.0.1:8920"
    assert partners.base_url("webhook") is None, "its config has no base_url"
    assert get_connector("hubspot").base_url_setting == "QI_HUBSPOT_BASE_URL"


def test_option_names_are_the_connector_body_fields_but_auth() -> None:
    assert get_connector("hubspot").option_names == {
        "queast_id_property",
        "note_id_property",
        "tier",
    }
    assert get_connector("pipedrive").option_names == {
        "domain_field_key",
        "queast_id_field_key",
        "plan",
        "daily_budget",
    }
    assert get_connector("webhook").option_names == frozenset()
    for spec in CONNECTORS.values():
        assert spec.option_names <= set(spec.config_class.model_fields)


def test_a_spec_refuses_options_its_config_does_not_take() -> None:
    with pytest.raises(ValueError, match="not fields of its config"):
        ConnectorSpec.of(WebhookSink, HubSpotOptions)


def test_an_inbound_block_among_the_options_is_refused() -> None:
    class _WithInbound(HubSpotOptions):
        inbound: dict[str, str] | None = None

    with pytest.raises(ValueError, match="inbound_options"):
        ConnectorSpec.of(CONNECTORS["hubspot"].sink_class, _WithInbound)


def test_the_webhook_and_pipedrive_specs_name_their_inbound_blocks() -> None:
    for name in ("webhook", "pipedrive"):
        spec = get_connector(name)
        assert spec.inbound is not None
        assert spec.inbound_options is not None
        assert "inbound" in spec.config_class.model_fields
