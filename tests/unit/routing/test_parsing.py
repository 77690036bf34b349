from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.domain.events import CompanyData, EventType, SignalData
from processors.routing.parsing import InvalidEventError, InvalidReason, parse_domain_event
from processors.samples import invalid_samples
from tests.unit.routing.conftest import envelope, raw

LIMIT = 64 * 1024


def _reason(key: bytes | None, value: bytes | None) -> InvalidReason:
    with pytest.raises(InvalidEventError) as info:
        parse_domain_event(key, value, max_bytes=LIMIT)
    return info.value.reason


@pytest.mark.parametrize(
    "event_type",
    [
        "company.upserted",
        "person.upserted",
        "signal.emitted",
        "job_ad.published",
        "company.deleted",
        "person.deleted",
    ],
)
def test_every_event_type_parses(event_type: str) -> None:
    event = parse_domain_event(b"t_1", raw(envelope(event_type)), max_bytes=LIMIT)
    assert event.envelope.event_type is EventType(event_type)
    assert event.envelope.tenant_id == "t_1"
    assert event.entity.entity_id


def test_company_fields_are_typed(company_event: dict[str, Any]) -> None:
    event = parse_domain_event(b"t_1", raw(company_event), max_bytes=LIMIT)
    assert isinstance(event.entity, CompanyData)
    assert event.entity.version == company_event["data"]["version"]
    assert event.envelope.occurred_at.utcoffset() is not None


def test_correlation_id_defaults_to_event_id(company_event: dict[str, Any]) -> None:
    del company_event["correlation_id"]
    event = parse_domain_event(b"t_1", raw(company_event), max_bytes=LIMIT)
    assert event.correlation_id == company_event["event_id"]


def test_unknown_extra_fields_are_ignored(company_event: dict[str, Any]) -> None:
    company_event["new_upstream_field"] = 1
    company_event["data"]["new_entity_field"] = "x"
    assert parse_domain_event(b"t_1", raw(company_event), max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"t_1", None, InvalidReason.EMPTY),
        (b"t_1", b"", InvalidReason.EMPTY),
        (b"t_1", b"{nope", InvalidReason.UNPARSEABLE),
        (b"t_1", b"\xff\xfe\x00", InvalidReason.UNPARSEABLE),
        (b"t_1", b"[1]", InvalidReason.NOT_AN_OBJECT),
        (b"t_1", b'"text"', InvalidReason.NOT_AN_OBJECT),
        (b"t_1", b"{}", InvalidReason.MISSING_TENANT),
        (b"t_1", b'{"tenant_id": ""}', InvalidReason.MISSING_TENANT),
        (b"t_1", b'{"tenant_id": 42}', InvalidReason.MISSING_TENANT),
    ],
)
def test_malformed_records(key: bytes, value: bytes | None, reason: InvalidReason) -> None:
    assert _reason(key, value) is reason


def test_oversized_record_is_refused_before_parsing() -> None:
    assert _reason(b"t_1", b" " * (LIMIT + 1)) is InvalidReason.OVERSIZED


def test_deeply_nested_json_is_unparseable_not_a_crash() -> None:
    value = b"[" * 100_000 + b"]" * 100_000
    assert _reason(b"t_1", value[: LIMIT - 1] if len(value) > LIMIT else value) in {
        InvalidReason.UNPARSEABLE,
        InvalidReason.NOT_AN_OBJECT,
    }


def test_forged_tenant_key_is_refused(company_event: dict[str, Any]) -> None:
    """A record keyed for one tenant that claims another is refused, whichever way round."""
    with pytest.raises(InvalidEventError) as info:
        parse_domain_event(b"t_other", raw(company_event), max_bytes=LIMIT)
    assert info.value.reason is InvalidReason.KEY_MISMATCH
    assert info.value.tenant_id == "t_1"
    assert _reason(None, raw(company_event)) is InvalidReason.KEY_MISMATCH


def test_unknown_event_type(company_event: dict[str, Any]) -> None:
    company_event["event_type"] = "company.exploded"
    assert _reason(b"t_1", raw(company_event)) is InvalidReason.UNKNOWN_EVENT_TYPE


def test_unsupported_major_version(company_event: dict[str, Any]) -> None:
    company_event["schema_version"] = "2.0"
    assert _reason(b"t_1", raw(company_event)) is InvalidReason.UNSUPPORTED_SCHEMA_VERSION


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "not-a-uuid"),
        ("occurred_at", "2026-11-26T05:00:00"),  # no timezone
        ("tenant_id", "t 1 with spaces"),
        ("schema_version", "one"),
        ("data", "not an object"),
    ],
)
def test_envelope_validation(company_event: dict[str, Any], field: str, value: str) -> None:
    company_event[field] = value
    key = value.encode() if field == "tenant_id" else b"t_1"
    assert _reason(key, raw(company_event)) is InvalidReason.VALIDATION_FAILED


def test_entity_validation_names_fields_not_values(company_event: dict[str, Any]) -> None:
    company_event["data"] = {"name": "Secret Person Name", "version": -1}
    with pytest.raises(InvalidEventError) as info:
        parse_domain_event(b"t_1", raw(company_event), max_bytes=LIMIT)
    assert info.value.reason is InvalidReason.VALIDATION_FAILED
    assert "data.company_id" in info.value.detail
    assert "data.version" in info.value.detail
    assert "Secret Person Name" not in info.value.detail


def test_strict_signal_must_cite_known_evidence() -> None:
    document = envelope("signal.emitted")
    document["data"]["contract_mode"] = "strict"
    document["data"]["reasons"][0]["evidence_ids"] = ["missing"]
    assert _reason(b"t_1", raw(document)) is InvalidReason.CONTRACT_VIOLATION


def test_informational_signal_may_cite_anything() -> None:
    document = envelope("signal.emitted")
    document["data"]["contract_mode"] = "informational"
    document["data"]["reasons"][0]["evidence_ids"] = ["elsewhere"]
    event = parse_domain_event(b"t_1", raw(document), max_bytes=LIMIT)
    assert isinstance(event.entity, SignalData)


def test_signal_without_contract_mode_is_invalid() -> None:
    document = envelope("signal.emitted")
    del document["data"]["contract_mode"]
    assert _reason(b"t_1", raw(document)) is InvalidReason.VALIDATION_FAILED


def test_every_invalid_sample_gets_its_reason() -> None:
    for sample in invalid_samples("t_1", max_event_bytes=LIMIT):
        try:
            document = json.loads(sample.line)
        except ValueError:
            document = None
        key = (
            document["tenant_id"].encode()
            if isinstance(document, dict) and isinstance(document.get("tenant_id"), str)
            else None
        )
        assert _reason(key, sample.line).value == sample.reason, sample.reason


@settings(max_examples=300)
@given(st.binary(max_size=2048), st.one_of(st.none(), st.binary(max_size=16)))
def test_arbitrary_bytes_never_raise_anything_else(value: bytes, key: bytes | None) -> None:
    try:
        parse_domain_event(key, value, max_bytes=LIMIT)
    except InvalidEventError:
        return


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "event_type",
                "schema_version",
                "tenant_id",
                "occurred_at",
                "data",
                "correlation_id",
            ]
        ),
        json_values,
    )
)
def test_arbitrary_json_objects_never_raise_anything_else(document: dict[str, Any]) -> None:
    document.setdefault("tenant_id", "t_1")
    key = document["tenant_id"].encode() if isinstance(document["tenant_id"], str) else b"x"
    try:
        parse_domain_event(key, raw(document), max_bytes=LIMIT)
    except InvalidEventError:
        return
