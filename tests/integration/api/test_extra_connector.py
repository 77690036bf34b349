"""A connector the service has never heard of, defined in this file and registered with
:func:`connectors.registry.extended`: the API takes its connection, the router routes an event
to its exports topic (real Kafka), and the delivery engine (real Redis) hands the record to its
sink, which keeps it in a list. Nothing outside this file knows the connector.

A second connector keeps its secret under a name no built-in connector uses: the service seals
it at rest and redacts it in responses all the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from redis.asyncio import Redis

from connectors.base import BaseSink, BatchOutcome, DeliveryResult, OutboundRecord
from connectors.base.api import AuthInput, ConnectionOptions, PlainSecret, secrets_required
from connectors.base.config import ConnectionConfig
from connectors.registry import ConnectorSpec, extended, get_connector, registered
from processors.contracts import default_registry
from processors.deliveries.engine import DeliveryEngine
from processors.deliveries.envelope import item_from_record
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.sinks import ConnectorSinkFactory
from processors.deliveries.state import DeliveryStateRepository
from processors.deliveries.throttle import GlobalThrottle
from processors.kafka import ensure_topics, producer
from processors.routing.service import IncomingRecord, OutgoingRecord, RoutingService
from processors.samples import sample_events, to_json_line
from processors.secrets import REDACTED
from processors.settings import Settings
from processors.tenants.models import Connector
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import SEALED_PREFIX, open_settings
from processors.topics import TopicMap
from tests.integration.conftest import PARTITIONS
from tests.support.kafka_io import TopicReader

from .conftest import PLATFORM, TENANT, TENANT_ADMIN

NAME = "listsink"
TOKEN = "list-sink-token-0c41d2"


class _ListAuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: Literal["token"]
    token: SecretStr


class ListConfig(ConnectionConfig):
    """The list connector's connection settings: a token and a label."""

    auth: _ListAuthConfig
    label: str = Field(min_length=1)


class ListToken(AuthInput):
    model_config = ConfigDict(json_schema_extra=secrets_required("token"))

    type: Literal["token"]
    token: PlainSecret | None = None


class ListOptions(ConnectionOptions):
    """A list connection: a token and the label of the list."""

    auth: ListToken | None = None
    label: str | None = None

    @property
    def auth_input(self) -> AuthInput | None:
        return self.auth


class ListSink(BaseSink[ListConfig]):
    """Keeps every record it is given, with the token and label it was built with."""

    name: ClassVar[str] = NAME
    config_class: ClassVar[type[ConnectionConfig]] = ListConfig
    max_batch_size: ClassVar[int] = 10
    delivered: ClassVar[list[tuple[str, str, OutboundRecord]]] = []

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        config = self.config
        for record in batch:
            self.delivered.append((config.auth.token.get_secret_value(), config.label, record))
        return BatchOutcome(
            delivered=tuple(
                DeliveryResult(delivery_id=r.delivery_id, status_code=200, duration_ms=0.0)
                for r in batch
            )
        )


SPEC = ConnectorSpec(
    name=NAME,
    sink_class=ListSink,
    config_class=ListConfig,
    max_batch_size=10,
    default_rate_limit=None,
    title="list",
    api_options=ListOptions,
    api_body_name="ListConnectionIn",
)


KEYED = "keyedsink"
SIGNING_KEY = "keyed-signing-key-7d30e4"


class _KeyedAuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: Literal["key"]
    signing_key: SecretStr


class KeyedConfig(ConnectionConfig):
    """The keyed connector's connection settings: a signing key, a name no other uses."""

    auth: _KeyedAuthConfig


class KeyedAuth(AuthInput):
    model_config = ConfigDict(json_schema_extra=secrets_required("signing_key"))

    type: Literal["key"]
    signing_key: PlainSecret | None = None


class KeyedOptions(ConnectionOptions):
    """A keyed connection: just its signing key."""

    auth: KeyedAuth | None = None

    @property
    def auth_input(self) -> AuthInput | None:
        return self.auth


class KeyedSink(BaseSink[KeyedConfig]):
    """Delivers nothing; only its connection's settings matter here."""

    name: ClassVar[str] = KEYED
    config_class: ClassVar[type[ConnectionConfig]] = KeyedConfig
    max_batch_size: ClassVar[int] = 1

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        return BatchOutcome()


KEYED_SPEC = ConnectorSpec.of(KeyedSink, KeyedOptions, title="keyed")


@pytest.fixture
def list_connector() -> Iterator[None]:
    ListSink.delivered.clear()
    with extended(SPEC):
        yield
    ListSink.delivered.clear()


@pytest.fixture
async def redis(api_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(api_settings.redis.url)
    yield client
    await client.aclose()


def _company_event() -> dict[str, Any]:
    return next(e for e in sample_events([TENANT], 20) if e["event_type"] == "company.upserted")


async def _route(settings: Settings, redis: Redis, event: dict[str, Any]) -> list[OutgoingRecord]:
    topics = TopicMap(settings.topics.prefix)
    service = RoutingService(
        topics=topics,
        connections=ConnectionRepository(redis, key_prefix=settings.redis.key_prefix),
        registry=default_registry(),
        settings=settings.routing,
    )
    incoming = IncomingRecord(topics.domain_events, 0, 0, TENANT.encode(), to_json_line(event))
    return (await service.route([incoming])).records


def _engine(settings: Settings, redis: Redis, produced: list[OutgoingRecord]) -> DeliveryEngine:
    delivery = settings.delivery
    prefix = settings.redis.key_prefix

    async def produce(records: Sequence[OutgoingRecord]) -> None:
        produced.extend(records)

    return DeliveryEngine(
        connector=NAME,
        max_batch_size=get_connector(NAME).max_batch_size,
        topics=TopicMap(settings.topics.prefix),
        settings=delivery,
        state=DeliveryStateRepository(
            redis, key_prefix=prefix, dedupe_ttl_seconds=3600, hop_ttl_seconds=3600
        ),
        connections=ConnectionRepository(redis, key_prefix=prefix),
        records=DeliveryRecordIndex(redis, key_prefix=prefix, retention_seconds=3600),
        produce=produce,
        sink_factory=ConnectorSinkFactory(
            NAME, box=settings.secrets.secret_box(), allow_private_networks=False
        ),
        throttle=GlobalThrottle(redis, key=f"{prefix}throttle:{NAME}", rate_per_second=100.0),
        policy=RetryPolicy(
            max_attempts=3, timeout_seconds=60, base_delay_seconds=1, max_delay_seconds=5
        ),
        registry=default_registry(),
    )


async def test_a_connector_registered_in_a_test_is_served_routed_and_delivered(
    list_connector: None,
    client_for: Callable[[Settings], Any],
    api_settings: Settings,
    redis: Redis,
) -> None:
    assert NAME in registered()
    topics = TopicMap(api_settings.topics.prefix)
    ensure_topics(
        api_settings.kafka,
        api_settings.topics,
        [spec for spec in topics.all_specs() if spec.name.endswith(f".{NAME}")],
    )

    # The API: its own PUT route and body, the connection stored with the secret sealed.
    async with client_for(api_settings) as client:
        document = (await client.get("/openapi.json")).json()
        put = document["paths"][f"/v1/tenants/{{tenant_id}}/connections/{NAME}"]["put"]
        assert put["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ListConnectionIn"
        }
        assert NAME in document["components"]["schemas"]["Connector"]["enum"]
        allowed = await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
        assert allowed.status_code == 204
        refused = await client.put(
            f"/v1/tenants/{TENANT}/connections/{NAME}",
            json={"label": "crm-a"},
            headers=TENANT_ADMIN,
        )
        assert refused.status_code == 422, "auth is required for delivery mode api"
        created = await client.put(
            f"/v1/tenants/{TENANT}/connections/{NAME}",
            json={"auth": {"type": "token", "token": TOKEN}, "label": "crm-a"},
            headers=TENANT_ADMIN,
        )
        assert created.status_code == 201, created.text
        connection = created.json()
        assert connection["connector"] == NAME
        assert connection["settings"]["label"] == "crm-a"
        assert TOKEN not in created.text
        fetched = await client.get(f"/v1/tenants/{TENANT}/connections/{NAME}", headers=PLATFORM)
        assert fetched.json()["connection_id"] == connection["connection_id"]

    # Routing: the event goes to the connector's exports topic, and through real Kafka.
    event = _company_event()
    routed = await _route(api_settings, redis, event)
    assert [r.topic for r in routed] == [topics.exports(NAME)]
    export = routed[0]
    kafka = producer(api_settings.kafka)
    kafka.produce(export.topic, value=export.value, key=export.key, headers=list(export.headers))
    assert kafka.flush(30) == 0
    reader = TopicReader(api_settings.kafka.bootstrap_servers, [topics.exports(NAME)], PARTITIONS)
    try:
        consumed = reader.wait_until(lambda records: len(records) == 1, timeout=30)
    finally:
        reader.close()
    assert len(consumed) == 1
    record = consumed[0]
    assert record.header("qi.connector") == NAME
    assert record.header("qi.connection_id") == connection["connection_id"]

    # Delivery: the engine builds the sink from the stored connection and delivers to it.
    produced: list[OutgoingRecord] = []
    engine = _engine(api_settings, redis, produced)
    acked: list[str] = []
    item = item_from_record(
        value=record.value,
        headers=record.headers,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
    try:
        await engine.submit(item, lambda: acked.append(item.delivery_id))
        for _ in range(500):
            if acked:
                break
            await asyncio.sleep(0.02)
    finally:
        await engine.close()
    assert acked == [item.delivery_id]
    assert len(ListSink.delivered) == 1
    token, label, delivered = ListSink.delivered[0]
    assert (token, label) == (TOKEN, "crm-a")
    assert delivered.connector == NAME
    assert delivered.delivery_id == record.header("qi.delivery_id")
    assert delivered.entity_id == event["data"]["company_id"]
    assert delivered.correlation_id == event["correlation_id"]
    statuses = [r.headers for r in produced if r.topic == topics.delivery_records]
    assert statuses, "a delivery record is written"
    assert not [r for r in produced if r.topic in (topics.retry(NAME), topics.dlq(NAME))]


async def test_an_extra_connector_s_differently_named_secret_is_sealed_and_redacted(
    client_for: Callable[[Settings], Any], api_settings: Settings, redis: Redis
) -> None:
    with extended(KEYED_SPEC):
        async with client_for(api_settings) as client:
            allowed = await client.put(f"/admin/v1/allowlist/{TENANT}", headers=PLATFORM)
            assert allowed.status_code == 204
            created = await client.put(
                f"/v1/tenants/{TENANT}/connections/{KEYED}",
                json={"auth": {"type": "key", "signing_key": SIGNING_KEY}},
                headers=TENANT_ADMIN,
            )
            assert created.status_code == 201, created.text
            assert SIGNING_KEY not in created.text
            assert created.json()["settings"]["auth"] == {"type": "key", "signing_key": REDACTED}
            fetched = await client.get(
                f"/v1/tenants/{TENANT}/connections/{KEYED}", headers=PLATFORM
            )
            assert fetched.status_code == 200
            assert SIGNING_KEY not in fetched.text
            assert fetched.json()["settings"]["auth"]["signing_key"] == REDACTED

        repository = ConnectionRepository(redis, key_prefix=api_settings.redis.key_prefix)
        stored = await repository.get(TENANT, Connector(KEYED))
        assert stored is not None
        sealed = stored.settings["auth"]["signing_key"]
        assert sealed.startswith(SEALED_PREFIX)
        opened = open_settings(
            stored.settings,
            box=api_settings.secrets.secret_box(),
            tenant_id=TENANT,
            connection_id=stored.connection_id,
        )
        assert opened["auth"] == {"type": "key", "signing_key": SIGNING_KEY}
