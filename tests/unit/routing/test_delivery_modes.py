"""Delivery modes: which export topics a connection's exports go to, and their keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from processors.contracts import decode, default_registry
from processors.routing.destinations import destination_label, export_destinations
from processors.routing.idempotency import delivery_id_for, idempotency_key
from processors.routing.service import IncomingRecord, OutgoingRecord, RoutingService
from processors.samples import sample_events, to_json_line
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, Connector, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap

WEBHOOK_TOPIC = "p.integrations.exports.webhook"


class _Connections(ConnectionRepository):
    def __init__(self, routing: dict[str, TenantRouting]) -> None:
        self._routing = routing

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        return {
            t: self._routing.get(t, TenantRouting(t, allowlisted=False)) for t in set(tenant_ids)
        }


def _conn(connector: str, mode: str | None = None, **extra: Any) -> ConnectionRecord:
    document: dict[str, Any] = {
        "tenant_id": "t_m",
        "connector": connector,
        "connection_id": f"conn_{connector}",
        **extra,
    }
    if mode is not None:
        document["delivery_mode"] = mode
    return ConnectionRecord.model_validate(document)


def _companies(count: int = 6) -> list[dict[str, Any]]:
    events = [
        e for e in sample_events(["t_m"], 60, seed=5) if e["event_type"] == "company.upserted"
    ]
    assert len(events) >= count
    return events[:count]


async def _route(
    connections: list[ConnectionRecord], events: list[dict[str, Any]]
) -> list[OutgoingRecord]:
    service = RoutingService(
        topics=TopicMap("p."),
        connections=_Connections({"t_m": TenantRouting("t_m", True, connections)}),
        registry=default_registry(),
        settings=RoutingSettings(max_event_bytes=4096),
    )
    batch = [
        IncomingRecord("p.queast.domain-events", 0, n, b"t_m", to_json_line(e))
        for n, e in enumerate(events)
    ]
    report = await service.route(batch)
    assert report.invalid == 0
    return report.records


def _headers(record: OutgoingRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def _key(event: dict[str, Any], connector: str, destination: str = "default") -> str:
    return idempotency_key(
        tenant_id="t_m",
        connector=connector,
        connection_id=f"conn_{connector}",
        event_type=event["event_type"],
        entity_id=event["data"]["company_id"],
        entity_version=event["data"]["version"],
        destination=destination,
    )


@pytest.mark.parametrize(
    ("connector", "mode", "expected"),
    [
        ("webhook", None, ("webhook",)),
        ("webhook", "api", ("webhook",)),  # older seeds: a webhook connection is a webhook
        ("webhook", "webhook", ("webhook",)),
        ("hubspot", "api", ("hubspot",)),
        ("hubspot", "webhook", ("webhook",)),
        ("hubspot", "both", ("hubspot", "webhook")),
        ("pipedrive", "api", ("pipedrive",)),
        ("pipedrive", "webhook", ("webhook",)),
        ("pipedrive", "both", ("pipedrive", "webhook")),
    ],
)
def test_export_destinations_follow_the_delivery_mode(
    connector: str, mode: str | None, expected: tuple[str, ...]
) -> None:
    destinations = export_destinations(_conn(connector, mode))
    assert tuple(d.value for d in destinations) == expected


def test_destination_label_is_default_for_the_own_connector_only() -> None:
    hubspot = _conn("hubspot", "both")
    assert destination_label(hubspot, Connector.HUBSPOT) == "default"
    assert destination_label(hubspot, Connector.WEBHOOK) == "webhook"
    assert destination_label(_conn("webhook"), Connector.WEBHOOK) == "default"


@pytest.mark.parametrize(
    ("connector", "mode", "topics"),
    [
        ("hubspot", "api", {"p.integrations.exports.hubspot"}),
        ("hubspot", "webhook", {WEBHOOK_TOPIC}),
        ("hubspot", "both", {"p.integrations.exports.hubspot", WEBHOOK_TOPIC}),
        ("pipedrive", "api", {"p.integrations.exports.pipedrive"}),
        ("pipedrive", "webhook", {WEBHOOK_TOPIC}),
        ("pipedrive", "both", {"p.integrations.exports.pipedrive", WEBHOOK_TOPIC}),
    ],
)
async def test_partner_connections_export_by_delivery_mode(
    connector: str, mode: str, topics: set[str]
) -> None:
    events = _companies()
    records = await _route([_conn(connector, mode)], events)
    assert Counter(r.topic for r in records) == {topic: len(events) for topic in topics}
    for record in records:
        headers = _headers(record)
        assert record.topic == f"p.integrations.exports.{headers['qi.connector']}"
        assert headers["qi.owner_connector"] == connector
        assert headers["qi.connection_id"] == f"conn_{connector}"
        _schema, contract = decode(record.value, registry=default_registry())
        assert contract["connection_id"] == f"conn_{connector}"
        assert contract["idempotency_key"] == headers["qi.idempotency_key"]
        assert headers["qi.delivery_id"] == delivery_id_for(headers["qi.idempotency_key"])


async def test_both_gives_distinct_keys_and_delivery_ids_and_keeps_the_partner_key() -> None:
    events = _companies()
    records = await _route([_conn("hubspot", "both")], events)
    by_topic: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_topic.setdefault(record.topic, []).append(_headers(record))
    partner = by_topic["p.integrations.exports.hubspot"]
    webhook = by_topic[WEBHOOK_TOPIC]
    # the partner copy's key is the one it had before delivery modes (destination "default")
    assert [h["qi.idempotency_key"] for h in partner] == [_key(e, "hubspot") for e in events]
    assert [h["qi.idempotency_key"] for h in webhook] == [
        _key(e, "hubspot", destination="webhook") for e in events
    ]
    keys = {h["qi.idempotency_key"] for h in partner + webhook}
    ids = {h["qi.delivery_id"] for h in partner + webhook}
    assert len(keys) == len(ids) == 2 * len(events)
    assert all(h["qi.connector"] == "webhook" for h in webhook)
    assert all(h["qi.connector"] == "hubspot" for h in partner)


async def test_a_webhook_only_partner_connection_uses_the_webhook_copy_key() -> None:
    events = _companies(2)
    records = await _route([_conn("pipedrive", "webhook")], events)
    assert [_headers(r)["qi.idempotency_key"] for r in records] == [
        _key(e, "pipedrive", destination="webhook") for e in events
    ]


async def test_keys_are_stable_when_routed_again() -> None:
    events = _companies()
    connections = [_conn("webhook"), _conn("hubspot", "both")]
    first = [_headers(r) for r in await _route(connections, events)]
    again = [_headers(r) for r in await _route(connections, events)]
    assert [(h["qi.idempotency_key"], h["qi.delivery_id"]) for h in first] == [
        (h["qi.idempotency_key"], h["qi.delivery_id"]) for h in again
    ]


async def test_own_webhook_connection_keeps_its_key_beside_a_partner_webhook_copy() -> None:
    """A tenant's webhook connection and its HubSpot connection in ``both`` mode: two webhook
    exports per event, one per connection, the webhook connection's key unchanged."""
    events = _companies(3)
    records = await _route([_conn("webhook"), _conn("hubspot", "both")], events)
    webhook = [_headers(r) for r in records if r.topic == WEBHOOK_TOPIC]
    assert len(webhook) == 2 * len(events)
    owners = Counter((h["qi.owner_connector"], h["qi.connection_id"]) for h in webhook)
    assert owners == {("webhook", "conn_webhook"): 3, ("hubspot", "conn_hubspot"): 3}
    own = [h["qi.idempotency_key"] for h in webhook if h["qi.owner_connector"] == "webhook"]
    assert own == [_key(e, "webhook") for e in events]
    assert len({h["qi.idempotency_key"] for h in webhook}) == len(webhook)


async def test_switched_off_event_types_take_no_copy_in_any_mode() -> None:
    events = _companies(2)
    connection = _conn("hubspot", "both", event_types={"company.upserted": False})
    assert await _route([connection], events) == []
    disabled = _conn("pipedrive", "both", enabled=False)
    assert await _route([disabled], events) == []


def test_webhook_copy_key_is_pinned_across_releases() -> None:
    """The webhook copy's key derivation: changing it would make replays re-send."""
    key = idempotency_key(
        tenant_id="t_1",
        connector="hubspot",
        connection_id="conn_1",
        event_type="company.upserted",
        entity_id="co_1",
        entity_version=3,
        destination="webhook",
    )
    assert key == "qik_cc42c9a57cd0cc8a44804bce086b8029"
