"""The routing service with an in-memory connection source (no Redis here)."""

from __future__ import annotations

from collections.abc import Iterable

from processors.contracts import decode, default_registry
from processors.routing.service import IncomingRecord, RoutingService
from processors.samples import sample_events, to_json_line
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap


class _Connections(ConnectionRepository):
    def __init__(self, routing: dict[str, TenantRouting]) -> None:
        self._routing = routing
        self.calls = 0

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        self.calls += 1
        return {
            t: self._routing.get(t, TenantRouting(t, allowlisted=False)) for t in set(tenant_ids)
        }


def _conn(tenant: str, connector: str) -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {"tenant_id": tenant, "connector": connector, "connection_id": f"c_{tenant}_{connector}"}
    )


def _service(routing: dict[str, TenantRouting]) -> tuple[RoutingService, _Connections]:
    connections = _Connections(routing)
    service = RoutingService(
        topics=TopicMap("p."),
        connections=connections,
        registry=default_registry(),
        settings=RoutingSettings(max_event_bytes=4096),
    )
    return service, connections


def _incoming(events: list[dict[str, object]]) -> list[IncomingRecord]:
    return [
        IncomingRecord(
            "p.queast.domain-events", 0, i, str(e["tenant_id"]).encode(), to_json_line(e)
        )
        for i, e in enumerate(events)
    ]


async def test_one_export_per_connection_and_one_lookup_per_batch() -> None:
    routing = {
        "t_a": TenantRouting("t_a", True, [_conn("t_a", "webhook"), _conn("t_a", "hubspot")]),
        "t_b": TenantRouting("t_b", True, [_conn("t_b", "webhook")]),
    }
    service, connections = _service(routing)
    events = [e for e in sample_events(["t_a", "t_b"], 40) if e["event_type"] == "company.upserted"]
    report = await service.route(_incoming(events))
    assert connections.calls == 1
    per_tenant = {"t_a": 2, "t_b": 1}
    assert report.exports == sum(per_tenant[str(e["tenant_id"])] for e in events)
    assert report.invalid == report.skipped == 0
    topics = {r.topic for r in report.records}
    assert topics == {"p.integrations.exports.webhook", "p.integrations.exports.hubspot"}
    for record in report.records:
        headers = dict(record.headers)
        _schema, contract = decode(record.value, registry=default_registry())
        assert headers["qi.idempotency_key"].decode() == contract["idempotency_key"]
        assert record.key == str(contract["tenant_id"]).encode()


async def test_not_allowlisted_and_unconnected_tenants_are_skipped() -> None:
    routing = {
        "t_out": TenantRouting("t_out", False, [_conn("t_out", "webhook")]),
        "t_none": TenantRouting("t_none", True, []),
    }
    service, _ = _service(routing)
    report = await service.route(_incoming(sample_events(["t_out", "t_none"], 10)))
    assert report.records == []
    assert report.skipped == 10


async def test_invalid_records_become_dead_letters_with_coordinates() -> None:
    service, _ = _service({})
    batch = [
        IncomingRecord("p.queast.domain-events", 3, 41, b"t_a", b"{broken"),
        IncomingRecord("p.queast.domain-events", 3, 42, b"t_a", b"x" * 5000),
    ]
    report = await service.route(batch)
    assert report.invalid == 2
    reasons = [dict(r.headers)["qi.error.reason"] for r in report.records]
    assert reasons == [b"unparseable", b"oversized"]
    first = dict(report.records[0].headers)
    assert first["qi.original.partition"] == b"3"
    assert first["qi.original.offset"] == b"41"
    assert report.records[0].topic == "p.integrations.dlq.invalid-events"
    assert report.records[0].value == b"{broken"


async def test_payload_left_out_of_dead_letters_when_configured() -> None:
    service = RoutingService(
        topics=TopicMap(""),
        connections=_Connections({}),
        registry=default_registry(),
        settings=RoutingSettings(dlq_include_payload=False),
    )
    report = await service.route([IncomingRecord("t", 0, 0, b"k", b"{broken")])
    assert report.records[0].value == b""
    assert dict(report.records[0].headers)["qi.payload_included"] == b"false"
