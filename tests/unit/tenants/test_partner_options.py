"""Partner options in connection bodies: validated, stored under the config classes' names,
and passed unchanged through the sink factory to the connector's config."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from connectors.base import BaseSink
from connectors.hubspot.config import HubSpotConnectionConfig, HubSpotTier
from connectors.pipedrive.config import PipedriveConnectionConfig, PipedrivePlan
from connectors.webhook.config import WebhookConnectionConfig
from processors.auth.principal import Principal, Role
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.errors import ValidationFailed
from processors.identity.repository import IdentityRepository
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.identity.strategies import MatchStrategy
from processors.secrets import KeyRing, SecretBox
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import (
    ConnectionOut,
    IdentityConnectionBody,
    MatchPolicyIn,
    connection_body,
)
from processors.tenants.service import ConnectionService


def _identity_body(connector: str) -> type[IdentityConnectionBody]:
    body = connection_body(connector)
    assert issubclass(body, IdentityConnectionBody)
    return body


HubSpotConnectionIn = _identity_body("hubspot")
PipedriveConnectionIn = _identity_body("pipedrive")
WebhookConnectionIn = connection_body("webhook")
WHSEC = "whsec_" + base64.b64encode(b"unit-partner-options-secret-32by").decode()
ADMIN = Principal(sub="ops", roles=frozenset({Role.PLATFORM_ADMIN}))
MATCH_POLICY = {
    "company_strategies": ["domain", "company_name"],
    "person_strategies": ["email"],
    "auto_link_threshold": 0.97,
    "ambiguity_margin": 0.1,
}
HUBSPOT: dict[str, Any] = {
    "delivery_mode": "both",
    "auth": {"type": "private_app", "token": "pat-na1-unit-token"},
    "webhook": {"url": "https://hooks.example.com/queast", "secret": WHSEC},
    "queast_id_property": "queast_company_id",
    "note_id_property": "queast_note_id",
    "tier": "professional_enterprise",
    "match_policy": MATCH_POLICY,
}
PIPEDRIVE: dict[str, Any] = {
    "delivery_mode": "api",
    "auth": {"type": "api_token", "token": "pipedrive-unit-token"},
    "domain_field_key": "a1b2c3d4e5f6",
    "queast_id_field_key": "f6e5d4c3b2a1",
    "plan": "premium",
    "daily_budget": 12000,
    "match_policy": {"auto_link_threshold": 0.95},
}


class _Connections(ConnectionRepository):
    """An in-memory connection store (no Redis in unit tests)."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, Connector], ConnectionRecord] = {}

    async def is_allowed(self, tenant_id: str) -> bool:
        return True

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        return self.stored.get((tenant_id, connector))

    async def put(self, connection: ConnectionRecord) -> None:
        self.stored[(connection.tenant_id, connection.connector)] = connection


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(KeyRing.from_env_value("k1:" + KeyRing.generate_key()))


@pytest.fixture
def service(box: SecretBox) -> ConnectionService:
    return ConnectionService(_Connections(), box=box)


@pytest.fixture
async def identity() -> AsyncIterator[IdentityRepository]:
    client = Redis()  # never connected: building a sink does not touch the mapping store
    yield IdentityRepository(client, key_prefix="unit:")
    await client.aclose()


def _locs(exc: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.errors()]


async def _built(
    factory: ConnectorSinkFactory, connection: ConnectionRecord
) -> AsyncIterator[BaseSink[Any]]:
    sink = await factory(connection)
    try:
        yield sink
    finally:
        await sink.close()


# -- the bodies ---------------------------------------------------------------------------


def test_hubspot_options_parse_with_the_config_class_names() -> None:
    body = HubSpotConnectionIn.model_validate(HUBSPOT)
    assert body.partner_options() == {
        "queast_id_property": "queast_company_id",
        "note_id_property": "queast_note_id",
        "tier": "professional_enterprise",
    }
    assert set(body.partner_options()) <= set(HubSpotConnectionConfig.model_fields)
    assert body.match_policy is not None
    assert body.match_policy.company_strategies == (
        MatchStrategy.DOMAIN,
        MatchStrategy.COMPANY_NAME,
    )


def test_pipedrive_options_parse_with_the_config_class_names() -> None:
    body = PipedriveConnectionIn.model_validate(PIPEDRIVE)
    assert body.partner_options() == {
        "domain_field_key": "a1b2c3d4e5f6",
        "queast_id_field_key": "f6e5d4c3b2a1",
        "plan": "premium",
        "daily_budget": 12000,
    }
    assert set(body.partner_options()) <= set(PipedriveConnectionConfig.model_fields)


def test_match_policy_fields_are_those_of_the_resolver() -> None:
    assert set(MatchPolicyIn.model_fields) == set(MatchPolicy.model_fields)


def test_options_left_out_are_not_stored_defaults() -> None:
    body = HubSpotConnectionIn.model_validate({"auth": HUBSPOT["auth"]})
    assert body.partner_options() == {}
    assert body.match_policy is None


@pytest.mark.parametrize(
    ("model", "changes", "loc"),
    [
        (HubSpotConnectionIn, {"queast_id_property": "Queast-Id"}, ("queast_id_property",)),
        (HubSpotConnectionIn, {"queast_id_property": ""}, ("queast_id_property",)),
        (HubSpotConnectionIn, {"note_id_property": "x" * 101}, ("note_id_property",)),
        (HubSpotConnectionIn, {"tier": "gold"}, ("tier",)),
        (PipedriveConnectionIn, {"plan": "platinum"}, ("plan",)),
        (PipedriveConnectionIn, {"daily_budget": 0}, ("daily_budget",)),
        (PipedriveConnectionIn, {"daily_budget": "lots"}, ("daily_budget",)),
        (PipedriveConnectionIn, {"domain_field_key": "has space"}, ("domain_field_key",)),
        (PipedriveConnectionIn, {"queast_id_field_key": "k" * 65}, ("queast_id_field_key",)),
        (
            HubSpotConnectionIn,
            {"match_policy": {"auto_link_threshold": 0.2}},
            ("match_policy", "auto_link_threshold"),
        ),
        (
            HubSpotConnectionIn,
            {"match_policy": {"ambiguity_margin": 0.9}},
            ("match_policy", "ambiguity_margin"),
        ),
        (
            PipedriveConnectionIn,
            {"match_policy": {"company_strategies": ["email"]}},
            ("match_policy", "company_strategies"),
        ),
        (
            PipedriveConnectionIn,
            {"match_policy": {"person_strategies": ["email", "email"]}},
            ("match_policy", "person_strategies"),
        ),
        (
            HubSpotConnectionIn,
            {"match_policy": {"person_strategies": []}},
            ("match_policy", "person_strategies"),
        ),
        (
            HubSpotConnectionIn,
            {"match_policy": {"company_strategies": ["telepathy"]}},
            ("match_policy", "company_strategies", 0),
        ),
        (HubSpotConnectionIn, {"match_policy": {"threshold": 0.9}}, ("match_policy", "threshold")),
        (HubSpotConnectionIn, {"domain_field_key": "abc"}, ("domain_field_key",)),
        (PipedriveConnectionIn, {"tier": "oauth_app"}, ("tier",)),
    ],
)
def test_bad_options_are_refused_naming_the_field(
    model: type[IdentityConnectionBody],
    changes: dict[str, Any],
    loc: tuple[str | int, ...],
) -> None:
    base = HUBSPOT if model is HubSpotConnectionIn else PIPEDRIVE
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**base, **changes})
    assert loc in _locs(caught.value)


def test_a_webhook_connection_takes_no_partner_options() -> None:
    body = {"webhook": {"url": "https://hooks.example.com/q", "secret": WHSEC}}
    extras: list[dict[str, Any]] = [{"match_policy": {}}, {"tier": "oauth_app"}, {"plan": "lite"}]
    for extra in extras:
        with pytest.raises(ValidationError) as caught:
            WebhookConnectionIn.model_validate({**body, **extra})
        assert _locs(caught.value) == [(next(iter(extra)),)]


# -- the service --------------------------------------------------------------------------


async def test_options_are_stored_at_the_top_of_the_settings_and_shown_back(
    service: ConnectionService,
) -> None:
    record, created = await service.save_connection(
        "t_a", Connector.HUBSPOT, HubSpotConnectionIn.model_validate(HUBSPOT), actor=ADMIN
    )
    assert created
    settings = record.settings
    assert settings["queast_id_property"] == "queast_company_id"
    assert settings["note_id_property"] == "queast_note_id"
    assert settings["tier"] == "professional_enterprise"
    assert settings["match_policy"] == MATCH_POLICY
    shown = ConnectionOut.from_record(record).settings
    assert {k: shown[k] for k in ("queast_id_property", "tier", "match_policy")} == {
        "queast_id_property": "queast_company_id",
        "tier": "professional_enterprise",
        "match_policy": MATCH_POLICY,
    }


async def test_only_given_match_policy_fields_are_stored(service: ConnectionService) -> None:
    record, _ = await service.save_connection(
        "t_a", Connector.PIPEDRIVE, PipedriveConnectionIn.model_validate(PIPEDRIVE), actor=ADMIN
    )
    assert record.settings["match_policy"] == {"auto_link_threshold": 0.95}


async def test_a_replace_stores_exactly_the_new_options(service: ConnectionService) -> None:
    await service.save_connection(
        "t_a", Connector.HUBSPOT, HubSpotConnectionIn.model_validate(HUBSPOT), actor=ADMIN
    )
    fewer = {k: v for k, v in HUBSPOT.items() if k not in {"tier", "match_policy", "auth"}}
    fewer["auth"] = {"type": "private_app"}  # the stored token is kept
    record, created = await service.save_connection(
        "t_a", Connector.HUBSPOT, HubSpotConnectionIn.model_validate(fewer), actor=ADMIN
    )
    assert not created
    assert "tier" not in record.settings
    assert "match_policy" not in record.settings
    assert record.settings["queast_id_property"] == "queast_company_id"


async def test_pipedrive_through_the_api_needs_its_domain_field(
    service: ConnectionService,
) -> None:
    body = {k: v for k, v in PIPEDRIVE.items() if k != "domain_field_key"}
    with pytest.raises(ValidationFailed) as caught:
        await service.save_connection(
            "t_a", Connector.PIPEDRIVE, PipedriveConnectionIn.model_validate(body), actor=ADMIN
        )
    assert caught.value.details == [{"loc": ["body", "domain_field_key"], "msg": "Field required"}]
    webhook_only = {
        "delivery_mode": "webhook",
        "webhook": {"url": "https://hooks.example.com/queast", "secret": WHSEC},
        "plan": "growth",
    }
    record, _ = await service.save_connection(
        "t_a", Connector.PIPEDRIVE, PipedriveConnectionIn.model_validate(webhook_only), actor=ADMIN
    )
    assert record.settings["plan"] == "growth"


# -- end to end: body -> stored settings -> sink factory -> config ---------------------------


async def test_hubspot_options_reach_the_connectors_config_unchanged(
    service: ConnectionService, box: SecretBox, identity: IdentityRepository
) -> None:
    record, _ = await service.save_connection(
        "t_a", Connector.HUBSPOT, HubSpotConnectionIn.model_validate(HUBSPOT), actor=ADMIN
    )
    factory = ConnectorSinkFactory(
        "hubspot", box=box, allow_private_networks=False, identity=identity
    )
    async for sink in _built(factory, record):
        config = sink.context.config
        assert isinstance(config, HubSpotConnectionConfig)
        assert config.queast_id_property == "queast_company_id"
        assert config.note_id_property == "queast_note_id"
        assert config.tier is HubSpotTier.PROFESSIONAL_ENTERPRISE
        assert config.auth.type == "private_app"
        resolver = sink.context.identity
        assert isinstance(resolver, ConnectionIdentityResolver)
        assert resolver._policy == MatchPolicy.model_validate(MATCH_POLICY)


async def test_pipedrive_options_reach_the_connectors_config_unchanged(
    service: ConnectionService, box: SecretBox, identity: IdentityRepository
) -> None:
    record, _ = await service.save_connection(
        "t_a", Connector.PIPEDRIVE, PipedriveConnectionIn.model_validate(PIPEDRIVE), actor=ADMIN
    )
    factory = ConnectorSinkFactory(
        "pipedrive", box=box, allow_private_networks=False, identity=identity
    )
    async for sink in _built(factory, record):
        config = sink.context.config
        assert isinstance(config, PipedriveConnectionConfig)
        assert config.domain_field_key == "a1b2c3d4e5f6"
        assert config.queast_id_field_key == "f6e5d4c3b2a1"
        assert config.plan is PipedrivePlan.PREMIUM
        assert config.daily_budget == 12000
        resolver = sink.context.identity
        assert isinstance(resolver, ConnectionIdentityResolver)
        assert resolver._policy.auto_link_threshold == 0.95
        assert resolver._policy.company_strategies == MatchPolicy().company_strategies


async def test_a_partner_connections_webhook_block_builds_the_webhook_sink(
    service: ConnectionService, box: SecretBox
) -> None:
    record, _ = await service.save_connection(
        "t_a", Connector.HUBSPOT, HubSpotConnectionIn.model_validate(HUBSPOT), actor=ADMIN
    )
    factory = ConnectorSinkFactory("webhook", box=box, allow_private_networks=False)
    async for sink in _built(factory, record):
        config = sink.context.config
        assert isinstance(config, WebhookConnectionConfig)
        assert str(config.url) == "https://hooks.example.com/queast"
        assert config.secret.get_secret_value() == WHSEC
        assert sink.context.connection_id == record.connection_id


def _names(items: Iterable[MatchStrategy]) -> list[str]:
    return [s.value for s in items]


def test_the_default_policy_passes_the_body_checks() -> None:
    defaults = MatchPolicy()
    body = MatchPolicyIn.model_validate(
        {
            "company_strategies": _names(defaults.company_strategies),
            "person_strategies": _names(defaults.person_strategies),
        }
    )
    assert body.company_strategies == defaults.company_strategies
