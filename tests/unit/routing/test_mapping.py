from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.contracts import ContractFamily, decode, default_registry, encode
from processors.domain.events import DomainEvent, SignalData
from processors.routing.mapping import EVENT_FAMILIES, format_timestamp, map_event
from processors.routing.parsing import parse_domain_event
from processors.tenants.models import ConnectionRecord, Connector
from tests.unit.routing.conftest import envelope, raw

HEADER_FIELDS = (
    "event_type",
    "schema_version",
    "occurred_at",
    "idempotency_key",
    "tenant_id",
    "connection_id",
    "correlation_id",
    "event_id",
    "entity_version",
)


def _event(document: dict[str, Any]) -> DomainEvent:
    return parse_domain_event(document["tenant_id"].encode(), raw(document), max_bytes=1 << 20)


def _connection(**overrides: Any) -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {"tenant_id": "t_1", "connector": "webhook", "connection_id": "conn_1", **overrides}
    )


@pytest.mark.parametrize(
    "event_type",
    [
        "company.upserted",
        "company.deleted",
        "person.upserted",
        "person.deleted",
        "signal.emitted",
        "job_ad.published",
    ],
)
def test_every_event_type_maps_to_a_valid_contract_record(event_type: str) -> None:
    event = _event(envelope(event_type))
    schema = default_registry().latest(EVENT_FAMILIES[event.envelope.event_type])
    mapped = map_event(event, _connection(), schema_version=schema.schema_version)
    assert mapped is not None
    for field in HEADER_FIELDS:
        assert mapped.record[field] is not None, field
    assert mapped.record["schema_version"] == schema.schema_version
    assert mapped.record["event_type"] == event_type
    _writer, decoded = decode(encode(schema, mapped.record), registry=default_registry())
    assert decoded["idempotency_key"] == mapped.idempotency_key


def test_job_ads_are_evidence_never_signals() -> None:
    event = _event(envelope("job_ad.published"))
    mapped = map_event(event, _connection(), schema_version="1.0")
    assert mapped is not None
    assert mapped.family is ContractFamily.JOB_AD_EVIDENCE
    assert "signal_id" not in mapped.record
    assert all(
        family is not ContractFamily.SIGNAL
        for event_type, family in EVENT_FAMILIES.items()
        if not event_type.value.startswith("signal.")
    )


def test_deletions_carry_the_id_and_the_flag() -> None:
    mapped = map_event(_event(envelope("company.deleted")), _connection(), schema_version="1.0")
    assert mapped is not None
    assert mapped.record["deleted"] is True
    assert mapped.record["company_id"] == "co_1"


def test_disabled_connection_and_switched_off_types_take_nothing() -> None:
    event = _event(envelope("company.upserted"))
    assert map_event(event, _connection(enabled=False), schema_version="1.0") is None
    switched = _connection(event_types={"company.upserted": False})
    assert map_event(event, switched, schema_version="1.0") is None
    other_switch = _connection(event_types={"person.upserted": False})
    assert map_event(event, other_switch, schema_version="1.0") is not None


@pytest.mark.parametrize("mode", ["informational", "legacy"])
def test_non_strict_signals_follow_the_connection_switch(mode: str) -> None:
    document = envelope("signal.emitted")
    document["data"]["contract_mode"] = mode
    event = _event(document)
    mapped = map_event(event, _connection(), schema_version="1.0")
    assert mapped is not None
    assert mapped.record["contract_mode"] == mode
    assert mapped.record["contract_version"] == document["data"]["contract_version"]
    strict_only = _connection(export_non_strict_signals=False)
    assert map_event(event, strict_only, schema_version="1.0") is None


def test_idempotency_key_differs_per_destination() -> None:
    event = _event(envelope("company.upserted"))
    webhook = map_event(event, _connection(), schema_version="1.0")
    hubspot = map_event(
        event,
        _connection(connector=Connector.HUBSPOT, connection_id="conn_2"),
        schema_version="1.0",
    )
    assert webhook is not None
    assert hubspot is not None
    assert webhook.idempotency_key != hubspot.idempotency_key
    again = map_event(event, _connection(), schema_version="1.0")
    assert again is not None
    assert again.idempotency_key == webhook.idempotency_key


def test_timestamps_are_utc_iso() -> None:
    event = _event(envelope("company.upserted", occurred_at="2026-11-26T07:00:00.250+02:00"))
    assert format_timestamp(event.envelope.occurred_at) == "2026-11-26T05:00:00.250Z"


tags = st.lists(st.text(min_size=1, max_size=30), max_size=8)
reasons = st.lists(
    st.fixed_dictionaries(
        {"code": st.text(min_size=1, max_size=30), "description": st.text(max_size=60)}
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(
    technology_tags=tags,
    reason_list=reasons,
    mode=st.sampled_from(["strict", "informational", "legacy"]),
    other_tags=tags,
)
def test_technology_tags_are_decorations_only(
    technology_tags: list[str],
    reason_list: list[dict[str, str]],
    mode: str,
    other_tags: list[str],
) -> None:
    """No input puts a technology tag among the reasons, and tags never gate an export."""
    document = envelope("signal.emitted")
    data = document["data"]
    data["contract_mode"] = mode
    data["reasons"] = [{**r, "evidence_ids": []} for r in reason_list]
    data["decorations"] = {"technology_tags": technology_tags}
    event = _event(document)
    mapped = map_event(event, _connection(), schema_version="1.0")
    assert mapped is not None
    record = mapped.record
    assert isinstance(event.entity, SignalData)
    assert record["reasons"] == [
        {"code": r.code, "description": r.description, "evidence_ids": []}
        for r in event.entity.reasons
    ]
    assert len(record["reasons"]) == len(reason_list)
    assert record["decorations"]["technology_tags"] == technology_tags
    assert record["contract_mode"] == mode
    assert record["contract_version"]
    # the same signal with other tags: the same export decision
    data["decorations"] = {"technology_tags": other_tags}
    assert map_event(_event(document), _connection(), schema_version="1.0") is not None
    schema = default_registry().latest(ContractFamily.SIGNAL)
    _w, decoded = decode(encode(schema, record), registry=default_registry())
    assert decoded["decorations"] == {"technology_tags": technology_tags}
    assert decoded["reasons"] == record["reasons"]
