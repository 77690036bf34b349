"""The sink factory keeps OAuth renewals in the grant store and starts new sinks from them."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, SecretStr
from redis.asyncio import Redis

from connectors.base import (
    BaseSink,
    BatchOutcome,
    ConnectionConfig,
    OutboundRecord,
    RateLimit,
    http_client_factory,
)
from connectors.base.api import ConnectionOptions
from connectors.base.http import HttpClientFactory
from connectors.base.oauth import OAuthGrant, OAuthTokenSource
from connectors.hubspot import HubSpotSink
from connectors.pipedrive import PipedriveSink
from connectors.pipedrive.client import PipedriveObject
from connectors.registry import ConnectorSpec
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.identity.repository import IdentityRepository
from processors.oauthgrants import OAuthTokenStore, credentials_fingerprint
from processors.secrets import KeyRing, SecretBox
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import seal_settings
from tests.unit.connectors.fakes import FakeClock
from tests.unit.deliveries.fakes import FakeRedis

BOX = SecretBox(KeyRing.from_env_value("k1:" + base64.b64encode(bytes(range(32))).decode()))
HUBSPOT_AUTH = {"type": "oauth", "client_id": "cid", "client_secret": "cs", "refresh_token": "rt-0"}
PIPEDRIVE_AUTH = {**HUBSPOT_AUTH, "api_domain": "https://acme.pipedrive.com"}
DOMAIN_KEY = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"


class Partner:
    """HubSpot's and Pipedrive's token endpoints and one API call each, as a mock transport.

    Every renewal hands out ``at-N`` (valid ``expires_in``) and rotates the refresh token to
    ``rt-N``; Pipedrive's also names ``https://acme-eu.pipedrive.com`` as the API host.
    """

    def __init__(self, *, expires_in: int = 1800, rotating: bool = False) -> None:
        self.expires_in = expires_in
        self.rotating = rotating
        """Refuse a refresh token used before (``invalid_grant``), as Pipedrive does."""
        self.refreshed_with: list[str] = []
        self.bearers: list[str] = []
        self.api_hosts: list[str] = []
        self._numbers = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in {"/oauth/v1/token", "/oauth/token"}:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            spent = form["refresh_token"] in self.refreshed_with
            self.refreshed_with.append(form["refresh_token"])
            if self.rotating and spent:
                return httpx.Response(400, json={"error": "invalid_grant"})
            number = next(self._numbers)
            grant: dict[str, Any] = {
                "access_token": f"at-{number}",
                "refresh_token": f"rt-{number}",
                "expires_in": self.expires_in,
                "token_type": "bearer",
            }
            if path == "/oauth/token":
                grant["api_domain"] = "https://acme-eu.pipedrive.com"
            return httpx.Response(200, json=grant)
        self.bearers.append(request.headers["authorization"])
        self.api_hosts.append(request.url.host)
        if path == "/crm/v3/objects/companies/batch/archive":
            return httpx.Response(204)
        if path == "/api/v2/organizations/1":
            return httpx.Response(200, json={"success": True, "data": {"id": 1, "name": "Acme"}})
        return httpx.Response(404)

    def client_factory(self) -> HttpClientFactory:
        def build(**options: Any) -> httpx.AsyncClient:
            return http_client_factory(transport=httpx.MockTransport(self), **options)

        return build


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def partner() -> Partner:
    return Partner()


@pytest.fixture
def identity() -> IdentityRepository:
    # never called: these tests use the sinks' clients directly (no connection is opened)
    return IdentityRepository(Redis.from_url("redis://127.0.0.1:1/0"))


def _store(redis: FakeRedis, clock: FakeClock) -> OAuthTokenStore:
    return OAuthTokenStore(cast(Redis, redis), box=BOX, clock=clock.time)


def _factory(
    connector: str,
    *,
    store: OAuthTokenStore | None,
    partner: Partner,
    clock: FakeClock,
    identity: IdentityRepository,
) -> ConnectorSinkFactory:
    return ConnectorSinkFactory(
        connector,
        box=BOX,
        allow_private_networks=False,
        identity=identity,
        tokens=store,
        clock=clock,
        http_client_factory=partner.client_factory(),
    )


def _connection(connector: str, settings: dict[str, Any]) -> ConnectionRecord:
    record = ConnectionRecord.model_validate(
        {"tenant_id": "t_1", "connector": connector, "connection_id": f"conn_{connector}"}
    )
    sealed = seal_settings(
        settings, box=BOX, tenant_id=record.tenant_id, connection_id=record.connection_id
    )
    return record.model_copy(update={"settings": sealed})


async def _archive(factory: ConnectorSinkFactory, connection: ConnectionRecord) -> None:
    sink = await factory(connection)
    try:
        assert isinstance(sink, HubSpotSink)
        assert await sink.client.archive("companies", ["1"]) == 204
    finally:
        await sink.close()


async def _read_organization(factory: ConnectorSinkFactory, connection: ConnectionRecord) -> None:
    sink = await factory(connection)
    try:
        assert isinstance(sink, PipedriveSink)
        assert await sink.client.get(PipedriveObject.ORGANIZATION, 1) is not None
    finally:
        await sink.close()


async def test_a_hubspot_renewal_is_stored_and_the_next_sink_continues_from_it(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    store = _store(redis, clock)
    factory = _factory("hubspot", store=store, partner=partner, clock=clock, identity=identity)
    connection = _connection("hubspot", {"auth": HUBSPOT_AUTH})

    await _archive(factory, connection)  # first use: renews with the stored refresh token
    credentials = credentials_fingerprint(HUBSPOT_AUTH)
    assert credentials is not None
    grant = await store.load(tenant_id="t_1", connection_id="conn_hubspot", credentials=credentials)
    assert grant is not None
    assert grant.access_token.get_secret_value() == "at-1"
    assert grant.refresh_token.get_secret_value() == "rt-1"
    assert grant.expires_at == clock.wall + 1800

    await _archive(factory, connection)  # a new sink (worker restart): the stored token
    assert partner.refreshed_with == ["rt-0"]
    assert partner.bearers == ["Bearer at-1", "Bearer at-1"]

    clock.advance(1800)
    await _archive(factory, connection)  # expired: renewed with the rotated refresh token
    assert partner.refreshed_with == ["rt-0", "rt-1"]
    assert partner.bearers[-1] == "Bearer at-2"
    latest = await store.load(
        tenant_id="t_1", connection_id="conn_hubspot", credentials=credentials
    )
    assert latest is not None
    assert latest.access_token.get_secret_value() == "at-2"
    assert latest.refresh_token.get_secret_value() == "rt-2"


async def test_a_pipedrive_renewal_keeps_the_rotated_refresh_token_and_the_api_domain(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    store = _store(redis, clock)
    factory = _factory("pipedrive", store=store, partner=partner, clock=clock, identity=identity)
    connection = _connection("pipedrive", {"auth": PIPEDRIVE_AUTH, "domain_field_key": DOMAIN_KEY})

    await _read_organization(factory, connection)
    await _read_organization(factory, connection)

    assert partner.refreshed_with == ["rt-0"]
    assert partner.bearers == ["Bearer at-1", "Bearer at-1"]
    assert partner.api_hosts == ["acme-eu.pipedrive.com", "acme-eu.pipedrive.com"]
    credentials = credentials_fingerprint(PIPEDRIVE_AUTH)
    assert credentials is not None
    grant = await store.load(
        tenant_id="t_1", connection_id="conn_pipedrive", credentials=credentials
    )
    assert grant is not None
    assert grant.refresh_token.get_secret_value() == "rt-1"
    assert grant.api_domain == "https://acme-eu.pipedrive.com"


async def test_new_credentials_on_the_connection_win_over_a_stored_grant(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    store = _store(redis, clock)
    factory = _factory("hubspot", store=store, partner=partner, clock=clock, identity=identity)
    await _archive(factory, _connection("hubspot", {"auth": HUBSPOT_AUTH}))

    reauthorised = {**HUBSPOT_AUTH, "refresh_token": "rt-reauthorised"}
    await _archive(factory, _connection("hubspot", {"auth": reauthorised}))

    assert partner.refreshed_with == ["rt-0", "rt-reauthorised"]
    assert partner.bearers == ["Bearer at-1", "Bearer at-2"]
    credentials = credentials_fingerprint(reauthorised)
    assert credentials is not None
    grant = await store.load(tenant_id="t_1", connection_id="conn_hubspot", credentials=credentials)
    assert grant is not None
    assert grant.access_token.get_secret_value() == "at-2"


async def test_a_connection_re_sealed_with_the_same_credentials_keeps_its_grant(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    store = _store(redis, clock)
    factory = _factory("hubspot", store=store, partner=partner, clock=clock, identity=identity)
    await _archive(factory, _connection("hubspot", {"auth": HUBSPOT_AUTH}))
    # saved again (other options, secrets re-sealed): other ciphertexts, same plaintext
    await _archive(factory, _connection("hubspot", {"auth": HUBSPOT_AUTH, "max_concurrency": 2}))

    assert partner.refreshed_with == ["rt-0"]
    assert partner.bearers == ["Bearer at-1", "Bearer at-1"]


async def test_private_app_connections_leave_the_store_alone(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    factory = _factory(
        "hubspot", store=_store(redis, clock), partner=partner, clock=clock, identity=identity
    )
    await _archive(
        factory, _connection("hubspot", {"auth": {"type": "private_app", "token": "pat-1"}})
    )

    assert partner.bearers == ["Bearer pat-1"]
    assert partner.refreshed_with == []
    assert redis.values == {}


async def test_without_a_store_every_sink_starts_from_the_connection(
    clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    factory = _factory("hubspot", store=None, partner=partner, clock=clock, identity=identity)
    connection = _connection("hubspot", {"auth": HUBSPOT_AUTH})
    await _archive(factory, connection)
    await _archive(factory, connection)

    assert partner.refreshed_with == ["rt-0", "rt-0"]


async def test_a_stored_grant_the_config_refuses_is_ignored(
    redis: FakeRedis, clock: FakeClock, partner: Partner, identity: IdentityRepository
) -> None:
    store = _store(redis, clock)
    credentials = credentials_fingerprint(PIPEDRIVE_AUTH)
    assert credentials is not None
    refused = OAuthGrant(
        access_token=SecretStr("at-stored"),
        refresh_token=SecretStr("rt-stored"),
        expires_at=clock.wall + 1800,
        api_domain="https://api.example.com",  # not a pipedrive.com host
    )
    await store.save(
        refused, tenant_id="t_1", connection_id="conn_pipedrive", credentials=credentials
    )
    factory = _factory("pipedrive", store=store, partner=partner, clock=clock, identity=identity)

    await _read_organization(
        factory, _connection("pipedrive", {"auth": PIPEDRIVE_AUTH, "domain_field_key": DOMAIN_KEY})
    )

    assert partner.refreshed_with == ["rt-0"]
    assert partner.bearers == ["Bearer at-1"]


@pytest.mark.parametrize("connector", ["hubspot", "pipedrive"])
async def test_two_sinks_of_one_connection_share_the_rotated_refresh_token(
    connector: str, redis: FakeRedis, clock: FakeClock, identity: IdentityRepository
) -> None:
    """Both sinks start from the connection's ``rt-0``; the second one's refresh is refused
    once the first rotated it, so it reloads the stored grant instead of needing reauth."""
    partner = Partner(rotating=True)
    store = _store(redis, clock)
    factory = _factory(connector, store=store, partner=partner, clock=clock, identity=identity)
    settings: dict[str, Any] = (
        {"auth": HUBSPOT_AUTH}
        if connector == "hubspot"
        else {"auth": PIPEDRIVE_AUTH, "domain_field_key": DOMAIN_KEY}
    )
    connection = _connection(connector, settings)
    first, second = await factory(connection), await factory(connection)
    try:
        for sink in (first, second):
            if isinstance(sink, HubSpotSink):
                assert await sink.client.archive("companies", ["1"]) == 204
            else:
                assert isinstance(sink, PipedriveSink)
                assert await sink.client.get(PipedriveObject.ORGANIZATION, 1) is not None
    finally:
        await first.close()
        await second.close()
    assert partner.refreshed_with == ["rt-0", "rt-0"]  # the second was refused, then reloaded
    assert partner.bearers == ["Bearer at-1", "Bearer at-1"]


class ExampleAuth(BaseModel):
    """An OAuth block as a connector the factory knows nothing about declares it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["oauth"]
    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr
    access_token: SecretStr | None = None
    expires_at: float | None = None


class ExampleConfig(ConnectionConfig):
    auth: ExampleAuth


class ExampleOAuth(OAuthTokenSource):
    partner: ClassVar[str] = "example"
    log_prefix: ClassVar[str] = "example.oauth"


class ExampleSink(BaseSink[ExampleConfig]):
    """A sink of a made-up OAuth partner: its token source keeps grants in the context's
    grant store, like every connector of the kit."""

    name: ClassVar[str] = "example"
    config_class: ClassVar[type[ConnectionConfig]] = ExampleConfig
    max_batch_size: ClassVar[int] = 1
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(rate=10, per_seconds=1)

    async def setup(self) -> None:
        self._http = self.context.http_client_factory()
        self.tokens = ExampleOAuth(
            self.config.auth,
            http_client=self._http,
            token_url="https://auth.example.com/oauth/token",
            clock=self.context.clock,
            store=self.context.grant_store,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        msg = "the grant-store test builds sinks and asks for tokens; it never writes"
        raise AssertionError(msg)


async def test_any_oauth_connector_keeps_its_grants_through_the_factory(
    monkeypatch: pytest.MonkeyPatch,
    redis: FakeRedis,
    clock: FakeClock,
    identity: IdentityRepository,
) -> None:
    """No line of the factory names the connector: its sinks get the connection's grant
    store through their context, save the rotated grant, resume from it and reload it."""
    spec = ConnectorSpec.of(ExampleSink, ConnectionOptions)
    monkeypatch.setattr("processors.deliveries.sinks.get_connector", lambda _: spec)
    partner = Partner(rotating=True)
    store = _store(redis, clock)
    factory = _factory("example", store=store, partner=partner, clock=clock, identity=identity)
    # the record's connector is only a label to the factory, which runs the spec it was given
    connection = _connection("hubspot", {"auth": HUBSPOT_AUTH}).model_copy(
        update={"connector": "example"}
    )

    first, second = await factory(connection), await factory(connection)
    try:
        assert isinstance(first, ExampleSink)
        assert isinstance(second, ExampleSink)
        assert await first.tokens.headers() == {"authorization": "Bearer at-1"}
        # the second still holds rt-0, which the partner has rotated: it reloads at-1
        assert await second.tokens.headers() == {"authorization": "Bearer at-1"}
    finally:
        await first.close()
        await second.close()
    assert partner.refreshed_with == ["rt-0", "rt-0"]

    credentials = credentials_fingerprint(HUBSPOT_AUTH)
    assert credentials is not None
    grant = await store.load(tenant_id="t_1", connection_id="conn_hubspot", credentials=credentials)
    assert grant is not None
    assert grant.refresh_token.get_secret_value() == "rt-1"

    third = await factory(connection)  # a new sink resumes from the stored grant
    try:
        assert isinstance(third, ExampleSink)
        assert await third.tokens.headers() == {"authorization": "Bearer at-1"}
    finally:
        await third.close()
    assert partner.refreshed_with == ["rt-0", "rt-0"]
