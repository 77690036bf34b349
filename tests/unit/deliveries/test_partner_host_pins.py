"""QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS is for webhook sinks; partner host pins ignore it."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from connectors.base import PermanentError, http_client_factory
from connectors.hubspot import HubSpotSink
from connectors.pipedrive import PipedriveSink
from connectors.webhook import WebhookSink
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.identity.repository import IdentityRepository
from processors.secrets import KeyRing, SecretBox
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import seal_settings

BOX = SecretBox(KeyRing.from_env_value("k1:" + base64.b64encode(bytes(range(32))).decode()))
DOMAIN_KEY = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"
PIPEDRIVE_TOKEN = {"type": "api_token", "token": "pd-token"}
PIPEDRIVE_OAUTH = {
    "type": "oauth",
    "client_id": "cid",
    "client_secret": "cs",
    "refresh_token": "rt-0",
    "api_domain": "https://acme.pipedrive.com",
}
HUBSPOT_TOKEN = {"type": "private_app", "token": "pat-na1-00000000-0000-0000-0000-000000000000"}
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _no_network(**options: Any) -> httpx.AsyncClient:
    return http_client_factory(
        transport=httpx.MockTransport(lambda request: httpx.Response(404)), **options
    )


def _factory(
    connector: str, *, allow_private_networks: bool, base_url: str | None = None
) -> ConnectorSinkFactory:
    return ConnectorSinkFactory(
        connector,
        box=BOX,
        allow_private_networks=allow_private_networks,
        # never called: no sink here opens a connection
        identity=IdentityRepository(Redis.from_url("redis://127.0.0.1:1/0")),
        base_url=base_url,
        http_client_factory=_no_network,
    )


def _connection(connector: str, settings: dict[str, Any]) -> ConnectionRecord:
    record = ConnectionRecord.model_validate(
        {"tenant_id": "t_1", "connector": connector, "connection_id": f"conn_{connector}"}
    )
    sealed = seal_settings(
        settings, box=BOX, tenant_id=record.tenant_id, connection_id=record.connection_id
    )
    return record.model_copy(update={"settings": sealed})


@pytest.mark.parametrize(
    ("connector", "settings"),
    [
        (
            "pipedrive",
            {
                "auth": PIPEDRIVE_TOKEN,
                "domain_field_key": DOMAIN_KEY,
                "base_url": "https://evil.example",
            },
        ),
        (
            "pipedrive",
            {
                "auth": PIPEDRIVE_TOKEN,
                "domain_field_key": DOMAIN_KEY,
                "base_url": "http://10.0.0.5",
            },
        ),
        (
            "pipedrive",
            {
                "auth": {**PIPEDRIVE_OAUTH, "api_domain": "http://127.0.0.1:9"},
                "domain_field_key": DOMAIN_KEY,
            },
        ),
        (
            "pipedrive",
            {
                "auth": {**PIPEDRIVE_OAUTH, "token_url": "https://collector.example/oauth/token"},
                "domain_field_key": DOMAIN_KEY,
            },
        ),
        ("hubspot", {"auth": HUBSPOT_TOKEN, "base_url": "http://127.0.0.1:9"}),
    ],
    ids=["pd-host", "pd-private", "pd-api-domain", "pd-token-url", "hubspot-http"],
)
async def test_the_webhook_private_network_flag_does_not_widen_a_partner_pin(
    connector: str, settings: dict[str, Any]
) -> None:
    factory = _factory(connector, allow_private_networks=True)
    with pytest.raises(PermanentError, match="stored connection settings are invalid"):
        await factory(_connection(connector, settings))


async def test_a_partner_pointed_at_a_local_sandbox_by_the_operator_still_works() -> None:
    factory = _factory("pipedrive", allow_private_networks=False, base_url="http://127.0.0.1:8920")
    sink = await factory(
        _connection(
            "pipedrive",
            {
                "auth": {**PIPEDRIVE_OAUTH, "api_domain": "http://127.0.0.1:8920"},
                "domain_field_key": DOMAIN_KEY,
            },
        )
    )
    try:
        assert isinstance(sink, PipedriveSink)
    finally:
        await sink.close()


@pytest.mark.parametrize("base_url", [None, "https://api.pipedrive.com", "https://api.hubapi.com"])
async def test_a_real_partner_base_url_keeps_the_pin(base_url: str | None) -> None:
    factory = _factory("pipedrive", allow_private_networks=True, base_url=base_url)
    with pytest.raises(PermanentError):
        await factory(
            _connection(
                "pipedrive",
                {
                    "auth": {**PIPEDRIVE_OAUTH, "api_domain": "https://evil.example"},
                    "domain_field_key": DOMAIN_KEY,
                },
            )
        )


async def test_the_flag_still_opens_private_webhook_destinations() -> None:
    factory = _factory("webhook", allow_private_networks=True)
    sink = await factory(
        _connection("webhook", {"webhook": {"url": "http://127.0.0.1:8900/hook", "secret": SECRET}})
    )
    try:
        assert isinstance(sink, WebhookSink)
    finally:
        await sink.close()


async def test_a_partner_on_its_own_hosts_is_built() -> None:
    factory = _factory("hubspot", allow_private_networks=True)
    sink = await factory(_connection("hubspot", {"auth": HUBSPOT_TOKEN}))
    try:
        assert isinstance(sink, HubSpotSink)
    finally:
        await sink.close()
