"""A stored connection record that does not validate is one tenant's problem, not the batch's.

Real Redis: one tenant's connection value is corrupted by hand; routing a batch with events of
that tenant and of another dead-letters the first tenant's events with a reason and exports
the other's, instead of raising for the whole batch (which would stop the partition).
"""

from __future__ import annotations

import json

from processors.contracts import default_registry
from processors.routing.service import IncomingRecord, RoutingService
from processors.samples import sample_events
from processors.settings import RoutingSettings, Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap


def _incoming(events: list[dict[str, object]]) -> list[IncomingRecord]:
    return [
        IncomingRecord(
            topic="queast.domain-events",
            partition=0,
            offset=n,
            key=str(event["tenant_id"]).encode(),
            value=json.dumps(event).encode(),
        )
        for n, event in enumerate(events)
    ]


async def test_an_unreadable_connection_dead_letters_its_tenants_events_only(
    settings: Settings, repository: ConnectionRepository
) -> None:
    for tenant in ("t_ok", "t_corrupt"):
        await repository.allow(tenant)
        await repository.put(
            ConnectionRecord.model_validate(
                {"tenant_id": tenant, "connector": "hubspot", "connection_id": f"conn_{tenant}"}
            )
        )
    # a hand edit (or a bad restore) leaves a value that is not a connection record
    await repository._redis.hset(  # the test reaches into storage on purpose
        f"{settings.redis.key_prefix}tenant:t_corrupt:connections", "webhook", b'{"not": "a record"'
    )
    service = RoutingService(
        topics=TopicMap(""),
        connections=repository,
        registry=default_registry(),
        settings=RoutingSettings(),
    )
    samples = sample_events(["t_ok", "t_corrupt"], 20, seed=5)
    events = [e for e in samples if e["event_type"] == "company.upserted"]
    report = await service.route(_incoming(events))

    invalid = [r for r in report.records if r.topic == "integrations.dlq.invalid-events"]
    exports = [r for r in report.records if r.topic.startswith("integrations.exports.")]
    corrupt_events = [e for e in events if e["tenant_id"] == "t_corrupt"]
    ok_events = [e for e in events if e["tenant_id"] == "t_ok"]
    assert corrupt_events
    assert ok_events
    assert len(invalid) == len(corrupt_events)
    for record in invalid:
        headers = dict(record.headers)
        assert headers["qi.error.reason"] == b"configuration_unreadable"
        assert headers["qi.tenant_id"] == b"t_corrupt"
        assert b"webhook" in headers["qi.error.detail"]
    assert len(exports) == len(ok_events)
    assert {dict(r.headers)["qi.tenant_id"] for r in exports} == {b"t_ok"}
