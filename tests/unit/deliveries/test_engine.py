"""The delivery engine's outcomes, with in-memory stand-ins for Redis, Kafka and the partner."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest

from connectors.base import (
    AuthenticationError,
    BaseSink,
    BatchOutcome,
    ConnectionConfig,
    ConnectorError,
    DeliveryResult,
    EndpointGoneError,
    HeldForReviewError,
    OutboundRecord,
    PermanentError,
    QuotaExhaustedError,
    RecordFailure,
    SinkContext,
    TransientError,
    raise_for_response,
)
from processors.contracts import ContractFamily, default_registry, encode
from processors.deliveries.breaker import (
    Breaker,
    BreakerPolicy,
    Transition,
    disabled_reason,
    on_failure,
    on_success,
    take_probe,
)
from processors.deliveries.engine import DeliveryEngine
from processors.deliveries.envelope import DeliveryItem, EnvelopeError, item_from_record
from processors.deliveries.models import AttemptError, DeliveryRecord
from processors.deliveries.policy import RetryPolicy
from processors.deliveries.records import DeliveryRecordIndex
from processors.deliveries.state import (
    Claim,
    ClaimResult,
    ConnectionHealth,
    ConnectionState,
    DeliveryState,
    DeliveryStateRepository,
)
from processors.deliveries.throttle import GlobalThrottle
from processors.routing.service import OutgoingRecord
from processors.settings import DeliverySettings
from processors.tenants.models import ConnectionRecord, Connector
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

NOW = 1_800_000_000.0


class _State(DeliveryStateRepository):
    def __init__(self) -> None:
        self.delivered: set[str] = set()
        self.versions: dict[str, int] = {}
        self.hops: dict[str, int] = {}
        self.health: dict[str, ConnectionState] = {}
        self.claims: dict[str, str] = {}
        """Claim key -> owner; leases never expire here (a test deletes a claim instead)."""
        self.breakers: dict[str, Breaker] = {}

    async def load(self, items: Sequence[DeliveryItem]) -> list[DeliveryState]:
        return [
            DeliveryState(
                delivered=i.idempotency_key in self.delivered,
                newest_hop=self.hops.get(i.delivery_id, 0),
                newest_version=self.versions.get(i.version_field),
            )
            for i in items
        ]

    async def claim(
        self, items: Sequence[DeliveryItem], *, owner: str, lease_seconds: float
    ) -> list[Claim]:
        """The Redis script's decisions, in the same order (see ``state.py``)."""
        claims = []
        for i in items:
            key = f"{i.connection_id}|{i.version_field}"
            delivered = self.versions.get(i.version_field)
            if i.hop < self.hops.get(i.delivery_id, 0):
                claims.append(Claim(ClaimResult.LEFTOVER))
            elif i.skips_delivered and i.idempotency_key in self.delivered:
                claims.append(Claim(ClaimResult.DELIVERED))
            elif delivered is not None and delivered > i.entity_version:
                claims.append(Claim(ClaimResult.STALE, newest_version=delivered))
            elif self.claims.get(key, owner) != owner:
                claims.append(Claim(ClaimResult.BUSY, lease_left_ms=1000))
            else:
                self.claims[key] = owner
                self.versions[i.version_field] = max(delivered or -1, i.entity_version)
                claims.append(Claim(ClaimResult.CLAIMED))
        return claims

    async def renew(
        self, items: Sequence[DeliveryItem], *, owner: str, lease_seconds: float
    ) -> None:
        return None

    async def release(self, items: Sequence[DeliveryItem], *, owner: str) -> None:
        for i in items:
            key = f"{i.connection_id}|{i.version_field}"
            if self.claims.get(key) == owner:
                del self.claims[key]

    async def mark_delivered(self, items: Sequence[DeliveryItem]) -> None:
        for item in items:
            self.delivered.add(item.idempotency_key)
            self.versions[item.version_field] = max(
                self.versions.get(item.version_field, -1), item.entity_version
            )

    async def record_hops(self, hops: Sequence[tuple[str, int]]) -> None:
        for delivery_id, hop in hops:
            self.hops[delivery_id] = max(self.hops.get(delivery_id, 0), hop)

    async def connection_state(self, connection_id: str) -> ConnectionState | None:
        return self.health.get(connection_id)

    async def set_connection_state(
        self, connection_id: str, health: ConnectionHealth, *, reason: str, since: float
    ) -> None:
        self.health[connection_id] = ConnectionState(health, reason, since)

    # the breaker: the same pure transitions the Redis repository applies atomically

    def _current(self, destination: str, updated_at: float) -> Breaker:
        stored = self.breakers.get(destination, Breaker())
        return Breaker() if stored.older_than(updated_at) else stored

    async def breaker(self, destination: str) -> Breaker:
        return self.breakers.get(destination, Breaker())

    async def breaker_failed(
        self,
        destination: str,
        *,
        now: float,
        reason: str,
        probe: bool,
        updated_at: float,
        policy: BreakerPolicy,
    ) -> tuple[Breaker, Transition]:
        current = self._current(destination, updated_at)
        after, transition = on_failure(current, now=now, reason=reason, probe=probe, policy=policy)
        if transition is Transition.DISABLED:
            self.breakers.pop(destination, None)
            self.health[destination] = ConnectionState(
                ConnectionHealth.DISABLED, disabled_reason(after, policy=policy), now
            )
        else:
            self.breakers[destination] = after
        return after, transition

    async def breaker_succeeded(
        self, destination: str, *, updated_at: float, policy: BreakerPolicy
    ) -> Transition:
        _closed, transition = on_success(self._current(destination, updated_at))
        self.breakers.pop(destination, None)
        return transition

    async def breaker_probe(
        self, destination: str, *, now: float, updated_at: float, policy: BreakerPolicy
    ) -> tuple[Breaker, bool]:
        after, granted = take_probe(self._current(destination, updated_at), now=now)
        if after.counting:
            self.breakers[destination] = after
        return after, granted


class _Connections(ConnectionRepository):
    def __init__(self, connection: ConnectionRecord | None) -> None:
        self.connection = connection

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        return self.connection


class _Records(DeliveryRecordIndex):
    def __init__(self) -> None:
        self.added: list[DeliveryRecord] = []

    async def add_many(self, records: Sequence[DeliveryRecord]) -> None:
        self.added.extend(records)


class _Throttle(GlobalThrottle):
    def __init__(self, wait: float = 0.0) -> None:
        self.wait = wait

    async def acquire(self, n: int = 1) -> float:
        return self.wait


class _Config(ConnectionConfig):
    pass


Script = Callable[[OutboundRecord], ConnectorError | None]


class _ScriptedSink(BaseSink[_Config]):
    name: ClassVar[str] = "webhook"
    config_class: ClassVar[type[_Config]] = _Config
    max_batch_size: ClassVar[int] = 1

    def __init__(self, context: SinkContext[_Config], script: Script) -> None:
        super().__init__(context)
        self.script = script
        self.sent: list[OutboundRecord] = []

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        delivered, failed = [], []
        for record in batch:
            self.sent.append(record)
            error = self.script(record)
            if error is None:
                delivered.append(
                    DeliveryResult(delivery_id=record.delivery_id, status_code=200, duration_ms=1.0)
                )
            else:
                failed.append(RecordFailure(record.delivery_id, error))
        return BatchOutcome(tuple(delivered), tuple(failed))


class Harness:
    sink_class: ClassVar[type[_ScriptedSink]] = _ScriptedSink
    """The sink built for each connection."""

    def __init__(
        self,
        script: Script,
        *,
        connection: ConnectionRecord | None = None,
        lane_capacity: int = 100,
        throttle_wait: float = 0.0,
        state: _State | None = None,
    ) -> None:
        self.clock = NOW
        self.state = state if state is not None else _State()
        self.connection = connection if connection is not None else _connection()
        self.connections = _Connections(self.connection)
        self.records = _Records()
        self.produced: list[OutgoingRecord] = []
        self.script = script
        self.sinks: list[_ScriptedSink] = []
        self.built_for: list[ConnectionRecord] = []
        self.engine = DeliveryEngine(
            connector="webhook",
            max_batch_size=1,
            topics=TopicMap(""),
            settings=DeliverySettings(
                lane_capacity=lane_capacity,
                lane_concurrency=1,
                lane_batches=2,
                park_recheck_seconds=30.0,
                retry_timeout_seconds=3600,
            ),
            state=self.state,
            connections=self.connections,
            records=self.records,
            produce=self._produce,
            sink_factory=self._sink,
            throttle=_Throttle(throttle_wait),
            policy=RetryPolicy(
                max_attempts=3,
                timeout_seconds=3600,
                base_delay_seconds=1,
                max_delay_seconds=10,
                rng=lambda: 1.0,
            ),
            registry=default_registry(),
            clock=lambda: self.clock,
        )

    async def _produce(self, records: Sequence[OutgoingRecord]) -> None:
        self.produced.extend(records)

    def _scripted(self, record: OutboundRecord) -> ConnectorError | None:
        return self.script(record)  # looked up per call: a test may change the script

    async def _sink(self, connection: ConnectionRecord) -> BaseSink[Any]:
        self.built_for.append(connection)
        context: SinkContext[_Config] = SinkContext(
            tenant_id=connection.tenant_id,
            connection_id=connection.connection_id,
            connector="webhook",
            config=_Config(),
        )
        sink = self.sink_class(context, self._scripted)
        self.sinks.append(sink)
        return sink

    async def run(self, items: Iterable[DeliveryItem]) -> list[str]:
        """Submit items and wait until each is acknowledged; returns the ack order."""
        acked = await self.run_more(items)
        await self.engine.close()
        return acked

    async def run_more(self, items: Iterable[DeliveryItem]) -> list[str]:
        """Like :meth:`run`, leaving the engine (and its lanes' state) open."""
        acked: list[str] = []
        pending = list(items)
        for item in pending:
            await self.engine.submit(item, functools.partial(acked.append, item.delivery_id))
        for _ in range(200):
            if len(acked) == len(pending):
                break
            await asyncio.sleep(0.01)
        return acked

    def on(self, topic_suffix: str) -> list[OutgoingRecord]:
        return [r for r in self.produced if r.topic.endswith(topic_suffix)]

    def statuses(self) -> list[str]:
        return [r.status.value for r in self.records.added]

    def sent(self) -> int:
        return sum(len(s.sent) for s in self.sinks)


def _connection(**overrides: Any) -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {
            "tenant_id": "t_1",
            "connector": "webhook",
            "connection_id": "conn_1",
            "updated_at": datetime.fromtimestamp(NOW - 100, UTC),
            **overrides,
        }
    )


def _item(
    n: int = 1,
    *,
    version: int = 1,
    extra: dict[str, str] | None = None,
    company_id: str | None = None,
) -> DeliveryItem:
    schema = default_registry().latest(ContractFamily.COMPANY)
    record = {
        "event_type": "company.upserted",
        "schema_version": schema.schema_version,
        "occurred_at": "2026-11-26T05:00:00Z",
        "idempotency_key": f"qik_{n:032x}",
        "tenant_id": "t_1",
        "connection_id": "conn_1",
        "correlation_id": f"corr-{n}",
        "event_id": f"ev-{n}",
        "entity_version": version,
        "company_id": f"co_{n}" if company_id is None else company_id,
    }
    base = {
        "qi.delivery_id": f"d-{n}",
        "qi.tenant_id": "t_1",
        "qi.connector": "webhook",
        "qi.connection_id": "conn_1",
        "qi.event_type": "company.upserted",
        "qi.event_id": f"ev-{n}",
        "qi.idempotency_key": f"qik_{n:032x}",
        "qi.correlation_id": f"corr-{n}",
        "qi.entity_id": f"co_{n}",
        "qi.entity_version": str(version),
        "qi.contract": "company",
        "qi.schema_version": schema.schema_version,
        **(extra or {}),
    }
    return item_from_record(
        value=encode(schema, record),
        headers=base,
        topic="integrations.exports.webhook",
        partition=0,
        offset=n,
    )


def _headers(record: OutgoingRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def test_delivered_is_marked_recorded_and_acknowledged() -> None:
    h = Harness(lambda r: None)
    assert await h.run([_item(1)]) == ["d-1"]
    assert h.state.delivered == {f"qik_{1:032x}"}
    assert h.statuses() == ["delivered"]
    assert [json.loads(r.value)["status"] for r in h.on("delivery-records")] == ["delivered"]
    assert h.sinks[0].sent[0].payload["company_id"] == "co_1"
    assert h.sinks[0].sent[0].attempt == 1


async def test_transient_failure_goes_to_the_retry_topic_honouring_retry_after() -> None:
    h = Harness(lambda r: TransientError("503", status_code=503, retry_after=42.0))
    await h.run([_item(1)])
    (retry,) = h.on("retry.webhook")
    headers = _headers(retry)
    assert headers["qi.attempt"] == "1"
    assert headers["qi.hop"] == "1"
    assert int(headers["qi.not_before"]) >= int((NOW + 42) * 1000)
    assert json.loads(headers["qi.errors"])[0]["status_code"] == 503
    assert h.statuses() == ["retry_scheduled"]
    assert h.state.hops == {"d-1": 1}


async def test_retry_budget_spent_dead_letters_with_the_history() -> None:
    h = Harness(lambda r: TransientError("503", status_code=503))
    await h.run(
        [
            _item(
                1,
                extra={
                    "qi.attempt": "2",
                    "qi.hop": "2",
                    "qi.first_attempt_at": str(int(NOW * 1000)),
                    "qi.errors": "[]",
                },
            )
        ]
    )
    (dead,) = h.on("dlq.webhook")
    headers = _headers(dead)
    assert headers["qi.attempt"] == "3"
    assert "retry budget spent" in headers["qi.error.reason"]
    assert headers["qi.original.topic"] == "integrations.exports.webhook"
    assert dead.value, "the contract is kept"
    assert h.statuses() == ["dead_lettered"]


async def test_permanent_failure_dead_letters_at_once() -> None:
    h = Harness(lambda r: PermanentError("bad request", status_code=400))
    await h.run([_item(1)])
    assert len(h.on("dlq.webhook")) == 1
    assert h.on("retry.webhook") == []


async def test_gone_endpoint_dead_letters_and_parks_the_connection() -> None:
    h = Harness(lambda r: EndpointGoneError("gone", status_code=410))
    await h.run([_item(1)])
    assert h.state.health["conn_1"].health is ConnectionHealth.GONE
    h2 = Harness(lambda r: None)
    h2.state.health = h.state.health
    await h2.run([_item(2)])
    assert h2.sent() == 0
    assert h2.statuses() == ["parked"]
    assert _headers(h2.on("retry.webhook")[0])["qi.retry.kind"] == "parked"


async def test_rejected_credentials_park_without_spending_the_budget_until_updated() -> None:
    h = Harness(lambda r: AuthenticationError("401", status_code=401))
    await h.run([_item(1)])
    assert h.state.health["conn_1"].health is ConnectionHealth.NEEDS_REAUTH
    assert h.statuses() == ["parked"]
    assert h.on("dlq.webhook") == []
    # the tenant fixes the connection: it is updated after the park, so deliveries resume
    fixed = _connection(updated_at=datetime.fromtimestamp(NOW + 10, UTC))
    h2 = Harness(lambda r: None, connection=fixed)
    h2.state.health = h.state.health
    await h2.run([_item(2)])
    assert h2.statuses() == ["delivered"]


async def test_spent_quota_parks_until_the_reset_without_an_attempt() -> None:
    h = Harness(lambda r: QuotaExhaustedError(retry_after=3600.0, status_code=429))
    await h.run([_item(1)])
    headers = _headers(h.on("retry.webhook")[0])
    assert headers["qi.attempt"] == "0"
    assert int(headers["qi.not_before"]) >= int((NOW + 3600) * 1000)
    assert h.on("dlq.webhook") == []


async def test_ambiguous_match_is_held_for_review() -> None:
    h = Harness(lambda r: HeldForReviewError())
    assert await h.run([_item(1)]) == ["d-1"]
    assert h.statuses() == ["held_for_review"]
    assert h.on("retry.webhook") == h.on("dlq.webhook") == []


async def test_delivered_keys_and_stale_versions_are_not_sent() -> None:
    h = Harness(lambda r: None)
    h.state.delivered.add(f"qik_{1:032x}")
    h.state.versions["company:co_2"] = 9
    await h.run([_item(1), _item(2, version=3)])
    assert h.sent() == 0
    assert sorted(h.statuses()) == ["duplicate_skipped", "stale_skipped"]


async def test_replays_bypass_dedupe_but_not_the_version_guard() -> None:
    h = Harness(lambda r: None)
    h.state.delivered.add(f"qik_{1:032x}")
    await h.run([_item(1, extra={"qi.replay_id": "r1"})])
    assert h.statuses() == ["delivered"]


async def test_runs_other_than_replays_skip_delivered_keys_and_records_carry_the_run() -> None:
    h = Harness(lambda r: None)
    h.state.delivered.add(f"qik_{1:032x}")
    redriven = {"qi.replay_id": "rd1", "qi.run.kind": "redrive"}
    await h.run([_item(1, extra=redriven), _item(2, extra=redriven)])
    assert h.sent() == 1
    assert sorted(h.statuses()) == ["delivered", "duplicate_skipped"]
    assert {r.replay_id for r in h.records.added} == {"rd1"}


async def test_a_leftover_copy_of_an_older_hop_is_dropped_silently() -> None:
    h = Harness(lambda r: None)
    h.state.hops["d-1"] = 2
    assert await h.run([_item(1, extra={"qi.hop": "1"})]) == ["d-1"]
    assert h.sent() == 0
    assert h.produced == []


async def test_a_full_lane_defers_instead_of_blocking() -> None:
    release = asyncio.Event()
    h = Harness(lambda r: None, lane_capacity=1)

    async def slow_sink(connection: ConnectionRecord) -> BaseSink[Any]:
        await release.wait()
        return await Harness._sink(h, connection)

    h.engine._sink_factory = slow_sink  # make the lane busy
    acked: list[str] = []
    await h.engine.submit(_item(1), functools.partial(acked.append, "d-1"))
    for _ in range(5):
        await asyncio.sleep(0)  # the lane task takes d-1 and waits for its sink
    for n in range(2, 6):
        await h.engine.submit(_item(n), functools.partial(acked.append, f"d-{n}"))
    deferred = [_headers(r)["qi.delivery_id"] for r in h.on("retry.webhook")]
    # a queue holds two batches at least (here batches of one)
    assert deferred == ["d-4", "d-5"], "one in flight, two queued, the rest deferred"
    assert all(_headers(r)["qi.retry.kind"] == "deferred" for r in h.on("retry.webhook"))
    assert all(_headers(r)["qi.attempt"] == "0" for r in h.on("retry.webhook"))
    release.set()
    for _ in range(100):
        if len(acked) == 5:
            break
        await asyncio.sleep(0.01)
    await h.engine.close()
    assert sorted(acked) == ["d-1", "d-2", "d-3", "d-4", "d-5"]


@pytest.mark.parametrize(
    ("connection", "status", "topic"),
    [
        (_connection(enabled=False), "parked", "retry.webhook"),
        (_connection(connection_id="conn_other"), "dead_lettered", "dlq.webhook"),
    ],
)
async def test_disabled_or_replaced_connections(
    connection: ConnectionRecord, status: str, topic: str
) -> None:
    h = Harness(lambda r: None, connection=connection)
    await h.run([_item(1)])
    assert h.sent() == 0
    assert h.statuses() == [status]
    assert len(h.on(topic)) == 1


async def test_global_throttle_defers_when_the_wait_is_long() -> None:
    h = Harness(lambda r: None, throttle_wait=5.0)
    await h.run([_item(1)])
    assert h.sent() == 0
    assert h.statuses() == ["deferred"]
    assert int(_headers(h.on("retry.webhook")[0])["qi.not_before"]) >= int((NOW + 5) * 1000)


async def test_a_slow_down_answer_pauses_the_connection_without_spending_attempts() -> None:
    h = Harness(lambda r: TransientError("429", status_code=429, retry_after=30.0))
    await h.run_more([_item(1)])
    h.script = lambda r: None  # the endpoint would answer now, but it asked for 30 s
    acked = await h.run_more([_item(2), _item(3)])
    assert sorted(acked) == ["d-2", "d-3"]
    assert h.sent() == 1, "only the first record reached the endpoint"
    assert _topic_statuses(h) == ["retry_scheduled", "deferred", "deferred"]
    for record in h.on("retry.webhook")[1:]:
        headers = _headers(record)
        assert headers["qi.attempt"] == "0"
        assert int(headers["qi.not_before"]) >= int((NOW + 30) * 1000)
    h.clock = NOW + 31  # the pause is over: records go out again
    assert await h.run([_item(4)]) == ["d-4"]
    assert _topic_statuses(h)[-1] == "delivered"


async def test_a_failure_without_a_wait_hint_pauses_nothing() -> None:
    h = Harness(lambda r: TransientError("500", status_code=500, retry_after=30.0))
    await h.run_more([_item(1)])
    h.script = lambda r: None
    assert await h.run([_item(2)]) == ["d-2"]
    assert _topic_statuses(h) == ["retry_scheduled", "delivered"]


def _topic_statuses(h: Harness) -> list[str]:
    return [json.loads(r.value)["status"] for r in h.on("delivery-records")]


# -- delivery modes: a partner connection's webhook copy ------------------------------------


class _ByConnector(ConnectionRepository):
    """A tenant's connections by connector, and the connectors the engine asked for."""

    def __init__(self, *connections: ConnectionRecord) -> None:
        self.connections = {c.connector: c for c in connections}
        self.asked: list[Connector] = []

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        self.asked.append(connector)
        return self.connections.get(connector)


def _hubspot(**overrides: Any) -> ConnectionRecord:
    return _connection(
        **{"connector": "hubspot", "connection_id": "conn_hs", "delivery_mode": "both", **overrides}
    )


def _copy(n: int = 1, *, version: int = 1, owner: str = "hubspot", **extra: str) -> DeliveryItem:
    """A webhook export owned by a partner connection (its webhook copy)."""
    return _item(
        n,
        version=version,
        extra={"qi.connection_id": "conn_hs", "qi.owner_connector": owner, **extra},
    )


def _with_connections(h: Harness, *connections: ConnectionRecord) -> _ByConnector:
    repository = _ByConnector(*connections)
    h.engine._connections = repository
    return repository


async def test_a_webhook_copy_loads_the_owning_partner_connection() -> None:
    h = Harness(lambda r: None)
    repository = _with_connections(h, _hubspot())
    assert await h.run([_copy(1)]) == ["d-1"]
    assert repository.asked == [Connector.HUBSPOT]
    assert [c.connection_id for c in h.built_for] == ["conn_hs"]
    assert h.built_for[0].connector is Connector.HUBSPOT
    assert h.statuses() == ["delivered"]
    (record,) = h.records.added
    assert (record.connection_id, record.connector) == ("conn_hs", "webhook")


async def test_exports_without_an_owner_header_load_the_engines_own_connector() -> None:
    h = Harness(lambda r: None)
    repository = _with_connections(h, _connection(), _hubspot())
    assert await h.run([_item(1)]) == ["d-1"]
    assert repository.asked == [Connector.WEBHOOK]
    assert [c.connection_id for c in h.built_for] == ["conn_1"]


async def test_own_webhook_connection_and_a_partner_copy_have_separate_lanes() -> None:
    h = Harness(lambda r: None)
    _with_connections(h, _connection(), _hubspot())
    acked = await h.run([_item(1), _copy(2), _item(3, extra={"qi.owner_connector": "webhook"})])
    assert sorted(acked) == ["d-1", "d-2", "d-3"]
    assert sorted(c.connection_id for c in h.built_for) == ["conn_1", "conn_hs"]
    by_connection = {s.context.connection_id: len(s.sent) for s in h.sinks}
    assert by_connection == {"conn_1": 2, "conn_hs": 1}


async def test_a_partner_connections_needs_reauth_does_not_park_its_webhook_copy() -> None:
    h = Harness(lambda r: None)
    _with_connections(h, _hubspot())
    # the HubSpot engine parked the connection's HubSpot copies (health under the bare id)
    h.state.health["conn_hs"] = ConnectionState(ConnectionHealth.NEEDS_REAUTH, "401", NOW)
    assert await h.run([_copy(1)]) == ["d-1"]
    assert h.statuses() == ["delivered"]


async def test_a_rejected_webhook_copy_parks_only_the_webhook_destination() -> None:
    h = Harness(lambda r: AuthenticationError("401", status_code=401))
    _with_connections(h, _hubspot())
    await h.run([_copy(1)])
    assert set(h.state.health) == {"conn_hs:webhook"}
    assert h.state.health["conn_hs:webhook"].health is ConnectionHealth.NEEDS_REAUTH
    assert h.statuses() == ["parked"]
    # the parked destination holds the next copies, without an attempt
    h2 = Harness(lambda r: None)
    _with_connections(h2, _hubspot())
    h2.state.health = h.state.health
    await h2.run([_copy(2)])
    assert h2.sent() == 0
    assert h2.statuses() == ["parked"]


async def test_a_gone_webhook_copy_leaves_the_tenants_own_webhook_connection_alone() -> None:
    h = Harness(
        lambda r: (
            EndpointGoneError("gone", status_code=410) if r.connection_id == "conn_hs" else None
        )
    )
    _with_connections(h, _connection(), _hubspot())
    await h.run([_copy(1), _item(2)])
    assert set(h.state.health) == {"conn_hs:webhook"}
    assert sorted(h.statuses()) == ["dead_lettered", "delivered"]


async def test_the_version_guard_is_per_destination() -> None:
    h = Harness(lambda r: None)
    _with_connections(h, _hubspot())
    h.state.versions["company:co_1"] = 9  # HubSpot has version 9 of the company
    assert _copy(1).version_field == "webhook|company:co_1"
    await h.run([_copy(1, version=2)])
    assert h.statuses() == ["delivered"], "the webhook endpoint has not seen version 9"
    assert h.state.versions["webhook|company:co_1"] == 2


@pytest.mark.parametrize(
    ("connection", "error_class"),
    [
        (_hubspot(delivery_mode="api"), "DestinationRemoved"),
        (_hubspot(connection_id="conn_other"), "ConnectionRemoved"),
    ],
)
async def test_a_copy_whose_destination_or_connection_is_gone_is_dead_lettered(
    connection: ConnectionRecord, error_class: str
) -> None:
    h = Harness(lambda r: None)
    _with_connections(h, connection)
    await h.run([_copy(1)])
    assert h.sent() == 0
    (dead,) = h.on("dlq.webhook")
    headers = _headers(dead)
    assert headers["qi.error.class"] == error_class
    assert headers["qi.owner_connector"] == "hubspot", "a redrive still finds its owner"


async def test_a_retried_copy_keeps_its_owner() -> None:
    h = Harness(lambda r: TransientError("503", status_code=503))
    _with_connections(h, _hubspot())
    await h.run([_copy(1)])
    (retry,) = h.on("retry.webhook")
    again = item_from_record(
        value=retry.value, headers=_headers(retry), topic="retry", partition=0, offset=0
    )
    assert again.owner_connector == "hubspot"
    assert again.destination_key == "conn_hs:webhook"


@pytest.mark.parametrize(
    "extra",
    [
        {"qi.owner_connector": "salesforce"},
        {"qi.owner_connector": "hubspot", "qi.connector": "fax"},
    ],
)
def test_an_unknown_owner_or_connector_is_an_unusable_envelope(extra: dict[str, str]) -> None:
    with pytest.raises(EnvelopeError, match="names no known connector"):
        _item(1, extra=extra)


# -- hostile wait hints: bounded, budgeted, and never a stuck lane ---------------------------


class _ByTenant(ConnectionRepository):
    """One webhook connection per tenant."""

    def __init__(self, *tenants: str) -> None:
        self.connections = {t: _connection(tenant_id=t, connection_id=f"conn_{t}") for t in tenants}

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        return self.connections.get(tenant_id)


def _of(tenant: str, n: int, **extra: str) -> DeliveryItem:
    return _item(n, extra={"qi.tenant_id": tenant, "qi.connection_id": f"conn_{tenant}", **extra})


def _answer(status: int, retry_after: str) -> ConnectorError:
    """What the webhook connector raises for this answer (the real status mapping)."""
    response = httpx.Response(status, headers={"retry-after": retry_after})
    try:
        raise_for_response(response, partner="webhook", endpoint="hooks.example", clock=lambda: NOW)
    except ConnectorError as error:
        return error
    raise AssertionError("not an error status")


@pytest.mark.parametrize("retry_after", ["1e308", "1e9", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
@pytest.mark.parametrize("status", [429, 503])
async def test_a_hostile_retry_after_neither_raises_nor_stalls_any_lane(
    retry_after: str, status: int
) -> None:
    hostile = _answer(status, retry_after)
    h = Harness(lambda r: hostile if r.connection_id == "conn_t_bad" else None)
    h.engine._connections = _ByTenant("t_bad", "t_ok")
    items = [_of("t_bad", 1), _of("t_ok", 2), _of("t_bad", 3), _of("t_ok", 4), _of("t_bad", 5)]
    acked = await h.run_more(items)
    assert sorted(acked) == ["d-1", "d-2", "d-3", "d-4", "d-5"], "every record was handled"
    assert all(not t.done() for lane in h.engine._lanes.values() for t in lane.tasks)
    # the well-behaved connection delivered; the hostile one waits at most an hour
    records = [json.loads(r.value) for r in h.on("delivery-records")]
    assert {r["delivery_id"] for r in records if r["status"] == "delivered"} == {"d-2", "d-4"}
    waits = h.on("retry.webhook")
    assert {_headers(r)["qi.delivery_id"] for r in waits} == {"d-1", "d-3", "d-5"}
    for record in waits:
        assert int(NOW * 1000) <= int(_headers(record)["qi.not_before"]) <= (NOW + 3600) * 1000
    # the lane is alive and keeps serving once the pause is over
    h.clock = NOW + 3601
    h.script = lambda r: None
    assert await h.run([_of("t_bad", 6)]) == ["d-6"]
    assert _topic_statuses(h)[-1] == "delivered"


async def test_a_wait_hint_the_engine_gets_unbounded_is_bounded_there_too() -> None:
    error = TransientError("429", status_code=429, retry_after=1.0)
    error.retry_after = 1e308  # a connector that built its own error around a partner's number
    h = Harness(lambda r: error)
    assert await h.run([_item(1)]) == ["d-1"]
    (retry,) = h.on("retry.webhook")
    assert int(_headers(retry)["qi.not_before"]) <= (NOW + 3600) * 1000


def _aged(n: int, age: float, **extra: str) -> DeliveryItem:
    """An item first attempted ``age`` seconds ago (the harness's budget is 3600 s)."""
    return _item(
        n,
        extra={
            "qi.attempt": "1",
            "qi.hop": "1",
            "qi.first_attempt_at": str(int((NOW - age) * 1000)),
            "qi.errors": "[]",
            **extra,
        },
    )


async def test_a_wait_past_the_retry_budget_dead_letters_with_the_history() -> None:
    h = Harness(lambda r: _answer(429, "1e9"))
    await h.run([_aged(1, age=3000)])  # 600 s of budget left, and an hour asked for
    (dead,) = h.on("dlq.webhook")
    headers = _headers(dead)
    assert "retry budget spent" in headers["qi.error.reason"]
    assert [e["status_code"] for e in json.loads(headers["qi.errors"])] == [429]
    assert h.on("retry.webhook") == []


async def test_a_paused_connection_defers_only_within_the_budget() -> None:
    h = Harness(lambda r: _answer(429, "1e308"))
    await h.run_more([_item(1)])  # pauses the connection for the hour
    h.script = lambda r: None
    acked = await h.run([_item(2), _aged(3, age=3000)])
    assert sorted(acked) == ["d-2", "d-3"]
    assert h.sent() == 1
    deferred = [
        _headers(r) for r in h.on("retry.webhook") if _headers(r)["qi.delivery_id"] == "d-2"
    ]
    assert [d["qi.retry.kind"] for d in deferred] == ["deferred"]
    assert deferred[0]["qi.attempt"] == "0", "a deferral spends no attempt"
    (dead,) = h.on("dlq.webhook")
    assert _headers(dead)["qi.delivery_id"] == "d-3", "its age budget could not cover the pause"
    assert _headers(dead)["qi.error.class"] == "RetryBudgetSpent"


@pytest.mark.parametrize("age", [3599.5, 3600 * 24 * 365.0])
async def test_a_full_lane_cannot_defer_a_record_forever(age: float) -> None:
    release = asyncio.Event()
    h = Harness(lambda r: None, lane_capacity=1)

    async def slow_sink(connection: ConnectionRecord) -> BaseSink[Any]:
        await release.wait()
        return await Harness._sink(h, connection)

    h.engine._sink_factory = slow_sink
    acked: list[str] = []
    for n in range(1, 4):
        await h.engine.submit(_item(n), functools.partial(acked.append, f"d-{n}"))
    await h.engine.submit(_aged(4, age=age), functools.partial(acked.append, "d-4"))
    assert "d-4" in acked
    (dead,) = h.on("dlq.webhook")
    assert _headers(dead)["qi.delivery_id"] == "d-4"
    assert "deferred wait" in _headers(dead)["qi.error.reason"]
    release.set()
    await h.engine.close()


async def test_a_quota_reset_past_the_budget_dead_letters_instead_of_parking() -> None:
    h = Harness(lambda r: QuotaExhaustedError(retry_after=1e308, status_code=429))
    await h.run([_item(1)])
    assert h.on("retry.webhook") == []
    (dead,) = h.on("dlq.webhook")
    assert "retry budget spent" in _headers(dead)["qi.error.reason"]


# -- re-queueing a held retry record ----------------------------------------------------------


async def test_requeue_writes_the_same_wait_as_the_next_hop_and_acknowledges() -> None:
    h = Harness(lambda r: None)
    held = _aged(1, age=60, **{"qi.not_before": str(int((NOW + 1800) * 1000))})
    held.errors.append(
        AttemptError(
            attempt=1,
            at=datetime.fromtimestamp(NOW - 60, UTC),
            error_class="BackpressureError",
            reason="rate limited",
            status_code=429,
            retry_after_s=3600.0,
        )
    )
    acked: list[str] = []
    await h.engine.requeue([(held, functools.partial(acked.append, "d-1"))])
    assert acked == ["d-1"]
    (copy,) = h.on("retry.webhook")
    headers = _headers(copy)
    assert headers["qi.hop"] == "2"
    assert headers["qi.attempt"] == "1", "no attempt spent"
    assert headers["qi.not_before"] == str(int((NOW + 1800) * 1000)), "the same wait"
    assert headers["qi.first_attempt_at"] == str(int((NOW - 60) * 1000)), "the same budget"
    assert [e["status_code"] for e in json.loads(headers["qi.errors"])] == [429]
    assert copy.value == held.value
    assert h.state.hops == {"d-1": 2}
    assert h.on("delivery-records") == [], "not an outcome"
    # the held copy, read again after a crash, is a leftover now
    assert await h.run([held]) == ["d-1"]
    assert h.sent() == 0


async def test_requeue_of_a_leftover_copy_only_acknowledges_it() -> None:
    h = Harness(lambda r: None)
    h.state.hops["d-1"] = 5
    acked: list[str] = []
    await h.engine.requeue(
        [
            (_aged(1, age=60), functools.partial(acked.append, "d-1")),
            (_aged(2, age=60), functools.partial(acked.append, "d-2")),
        ]
    )
    assert acked == ["d-1", "d-2"]
    assert [_headers(r)["qi.delivery_id"] for r in h.produced] == ["d-2"]


# -- claims: two workers sharing one Redis (a partition moved between them) -------------------


class _GatedSink(_ScriptedSink):
    """Holds every write until ``gate`` opens: a request still with the partner."""

    def __init__(self, context: SinkContext[_Config], script: Script) -> None:
        super().__init__(context, script)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def write(self, batch: Sequence[OutboundRecord]) -> BatchOutcome:
        self.entered.set()
        await self.gate.wait()
        return await super().write(batch)


class _GatedHarness(Harness):
    """The old owner of a partition: its request is in flight until the test opens the gate."""

    sink_class = _GatedSink

    async def in_flight(self) -> _GatedSink:
        for _ in range(200):
            if (
                self.sinks
                and isinstance(sink := self.sinks[0], _GatedSink)
                and sink.entered.is_set()
            ):
                return sink
            await asyncio.sleep(0.01)
        raise AssertionError("the old owner never reached the partner")


def _returned(h: Harness) -> list[DeliveryItem]:
    """The deferred copies ``h`` wrote to the retry topic, as its retry agent reads them."""
    return [
        item_from_record(
            value=r.value,
            headers=_headers(r),
            topic=r.topic,
            partition=0,
            offset=n,
        )
        for n, r in enumerate(h.on("retry.webhook"))
    ]


def _version(n: int, version: int) -> DeliveryItem:
    """Version ``version`` of company ``co_{n}``: its own key and delivery id."""
    return _item(
        n,
        version=version,
        extra={"qi.idempotency_key": f"qik_{n}_v{version}", "qi.delivery_id": f"d-{n}-v{version}"},
    )


async def test_a_key_in_flight_at_the_old_owner_is_deferred_not_sent_by_the_new_owner() -> None:
    partner: list[str] = []

    def accept(record: OutboundRecord) -> None:
        partner.append(record.idempotency_key)

    shared = _State()
    old = _GatedHarness(accept, state=shared)
    new = Harness(accept, state=shared)
    old_acked: list[str] = []
    await old.engine.submit(_item(1), functools.partial(old_acked.append, "d-1"))
    sink = await old.in_flight()

    assert await new.run_more([_item(1)]) == ["d-1"]  # the re-read copy, after the rebalance
    assert new.sent() == 0
    await new.engine.flush_index()
    assert new.statuses() == ["deferred"]
    sink.gate.set()
    for _ in range(200):
        if old_acked:
            break
        await asyncio.sleep(0.01)
    assert old_acked == ["d-1"]
    assert await new.run_more(_returned(new)) == ["d-1"]
    await new.engine.flush_index()
    assert new.statuses() == ["deferred", "duplicate_skipped"]
    assert partner == [f"qik_{1:032x}"], "the partner got the key once"
    assert shared.claims == {}, "claims are released after the outcome is written"
    await old.engine.close()
    await new.engine.close()


async def test_an_older_version_in_flight_is_never_overtaken_by_a_newer_one() -> None:
    partner: list[tuple[str, int]] = []

    def accept(record: OutboundRecord) -> None:
        partner.append((record.entity_id, record.entity_version))

    shared = _State()
    old = _GatedHarness(accept, state=shared)
    new = Harness(accept, state=shared)
    await old.engine.submit(_version(1, 1), lambda: None)
    sink = await old.in_flight()

    await new.run_more([_version(1, 2)])
    assert new.sent() == 0, "version 2 waits while version 1 is with the partner"
    sink.gate.set()
    for _ in range(200):
        if partner:
            break
        await asyncio.sleep(0.01)
    await new.run_more(_returned(new))
    assert partner == [("co_1", 1), ("co_1", 2)]
    assert shared.versions == {"company:co_1": 2}
    await old.engine.close()
    await new.engine.close()


async def test_an_older_version_claimed_after_a_newer_one_was_delivered_is_skipped() -> None:
    shared = _State()
    new = Harness(lambda r: None, state=shared)
    old = Harness(lambda r: None, state=shared)
    await new.run([_version(1, 2)])
    await old.run([_version(1, 1)])  # the old owner's lane still held version 1
    assert (new.sent(), old.sent()) == (1, 0)
    assert old.statuses() == ["stale_skipped"]
    assert shared.versions == {"company:co_1": 2}


async def test_a_claim_left_by_a_dead_worker_defers_until_its_lease_ends() -> None:
    shared = _State()
    shared.claims["conn_1|company:co_1"] = "a-worker-that-died"
    h = Harness(lambda r: None, state=shared)
    await h.run_more([_item(1)])
    await h.engine.flush_index()
    assert (h.sent(), h.statuses()) == (0, ["deferred"])
    (deferred,) = _returned(h)
    assert deferred.attempts_made == 0, "waiting for a claim spends no attempt"
    assert deferred.not_before_ms <= int((NOW + 1.0) * 1000), "back when the lease ends"
    del shared.claims["conn_1|company:co_1"]  # the lease expired
    await h.run([deferred])
    assert h.sent() == 1
    assert h.statuses() == ["deferred", "delivered"]
    assert shared.claims == {}
