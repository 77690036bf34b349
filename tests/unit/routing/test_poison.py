"""Records that used to escape the routing service as exceptions, and bounded dead letters.

Each record here raised something other than ``InvalidEventError`` (and so stopped its
partition) before; now each is one dead letter with a reason and a detail that names fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from processors.contracts import decode, default_registry
from processors.routing import service as service_module
from processors.routing.mapping import map_event
from processors.routing.parsing import (
    MAX_INTEGER_DIGITS,
    InvalidEventError,
    InvalidReason,
    parse_domain_event,
)
from processors.routing.service import IncomingRecord, OutgoingRecord, RoutingService
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.unit.routing.conftest import envelope, raw

DLQ = "p.integrations.dlq.invalid-events"
MAX_DATE = "9999-12-31T23:59:59-01:00"


class _Connections(ConnectionRepository):
    def __init__(self) -> None:
        connections = [
            ConnectionRecord.model_validate(
                {"tenant_id": "t_1", "connector": c, "connection_id": f"c_{c}"}
            )
            for c in ("webhook", "hubspot")
        ]
        self._routing = TenantRouting("t_1", allowlisted=True, connections=connections)

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        return dict.fromkeys(set(tenant_ids), self._routing)


def _service(**settings: Any) -> RoutingService:
    return RoutingService(
        topics=TopicMap("p."),
        connections=_Connections(),
        registry=default_registry(),
        settings=RoutingSettings(**{"max_event_bytes": 2 * 1024 * 1024, **settings}),
    )


def _record(value: bytes | None, key: bytes | None = b"t_1", offset: int = 7) -> IncomingRecord:
    return IncomingRecord("p.queast.domain-events", 2, offset, key, value)


def _with_data(event_type: str, **fields: Any) -> bytes:
    document = envelope(event_type)
    document["data"] = {**document["data"], **fields}
    return raw(document)


def _huge_int_anywhere() -> bytes:
    text = raw(envelope()).decode()
    return (text[:-1] + ', "extra": {"deep": [' + "9" * 4_400 + "]}}").encode()


KILLERS: dict[str, tuple[bytes, InvalidReason, str]] = {
    "int_literal_over_4300_digits": (_huge_int_anywhere(), InvalidReason.UNPARSEABLE, "integer"),
    "schema_version_of_5000_digits": (
        raw(envelope(schema_version="1" * 5_000 + ".0")),
        InvalidReason.VALIDATION_FAILED,
        "schema_version",
    ),
    "occurred_at_past_max_date_in_utc": (
        raw(envelope(occurred_at=MAX_DATE)),
        InvalidReason.VALIDATION_FAILED,
        "occurred_at",
    ),
    "occurred_at_before_year_1_in_utc": (
        raw(envelope(occurred_at="0001-01-01T00:00:00+01:00")),
        InvalidReason.VALIDATION_FAILED,
        "occurred_at",
    ),
    "signal_detected_at_past_max_date": (
        _with_data("signal.emitted", detected_at=MAX_DATE),
        InvalidReason.VALIDATION_FAILED,
        "data.detected_at",
    ),
    "job_ad_posted_at_past_max_date": (
        _with_data("job_ad.published", posted_at=MAX_DATE),
        InvalidReason.VALIDATION_FAILED,
        "data.posted_at",
    ),
    "entity_version_2_pow_63": (
        _with_data("company.upserted", version=2**63),
        InvalidReason.VALIDATION_FAILED,
        "data.version",
    ),
    "entity_version_2_pow_64": (
        _with_data("person.upserted", version=2**64),
        InvalidReason.VALIDATION_FAILED,
        "data.version",
    ),
    "deleted_entity_version_2_pow_63": (
        _with_data("company.deleted", version=2**63),
        InvalidReason.VALIDATION_FAILED,
        "data.version",
    ),
    "tenant_id_with_lone_surrogate": (
        raw(envelope(tenant_id="t_\ud800")),
        InvalidReason.KEY_MISMATCH,
        "tenant_id",
    ),
    "schema_version_in_non_ascii_digits": (
        raw(envelope(schema_version="\u0661.\u0660")),
        InvalidReason.VALIDATION_FAILED,
        "schema_version",
    ),
}


@pytest.mark.parametrize("name", sorted(KILLERS))
def test_each_killer_is_an_invalid_event_naming_the_field(name: str) -> None:
    value, reason, field = KILLERS[name]
    with pytest.raises(InvalidEventError) as caught:
        parse_domain_event(b"t_1", value, max_bytes=2 * 1024 * 1024)
    assert caught.value.reason is reason
    assert field in caught.value.detail


@pytest.mark.parametrize("name", sorted(KILLERS))
async def test_each_killer_becomes_one_dead_letter_and_the_batch_goes_on(name: str) -> None:
    value, reason, _field = KILLERS[name]
    good = raw(envelope())
    batch = [_record(good, offset=1), _record(value, offset=2), _record(good, offset=3)]
    report = await _service().route(batch)
    assert report.invalid == 1
    assert report.exports == 4, "both valid events routed to both connections"
    dead = [r for r in report.records if r.topic == DLQ]
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["qi.error.reason"] == reason.value.encode()
    assert headers["qi.original.offset"] == b"2"
    assert dead[0].value == value, "kept for redrive"


def test_details_name_fields_never_values() -> None:
    secret = "9" * 25
    document = envelope("company.upserted")
    document["data"]["version"] = int(secret)
    document["schema_version"] = "1." + "7" * 12
    with pytest.raises(InvalidEventError) as caught:
        parse_domain_event(b"t_1", raw(document), max_bytes=1 << 20)
    assert secret not in caught.value.detail
    assert "7" * 12 not in caught.value.detail


def test_a_malformed_tenant_id_is_not_repeated() -> None:
    long_tenant = "t" * 500
    document = envelope(tenant_id=long_tenant)
    with pytest.raises(InvalidEventError) as caught:
        parse_domain_event(long_tenant.encode(), raw(document), max_bytes=1 << 20)
    assert caught.value.reason is InvalidReason.VALIDATION_FAILED
    assert caught.value.tenant_id is None


def test_integers_up_to_the_limit_are_read() -> None:
    document = envelope()
    document["extra"] = int("9" * MAX_INTEGER_DIGITS)
    event = parse_domain_event(b"t_1", raw(document), max_bytes=1 << 20)
    assert event.envelope.tenant_id == "t_1"


async def test_a_timestamp_in_year_one_is_written_with_four_digits() -> None:
    report = await _service().route([_record(raw(envelope(occurred_at="0001-01-01T01:00:00Z")))])
    assert report.exports == 2
    _schema, contract = decode(report.records[0].value, registry=default_registry())
    assert contract["occurred_at"] == "0001-01-01T01:00:00Z"


async def test_an_unforeseen_exception_in_mapping_dead_letters_that_record_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = map_event

    def flaky(event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.entity.entity_id == "co_poison":
            raise ZeroDivisionError("a message that quotes co_poison")
        return real(event, *args, **kwargs)

    monkeypatch.setattr(service_module, "map_event", flaky)
    poison = envelope()
    poison["data"] = {**poison["data"], "company_id": "co_poison"}
    batch = [_record(raw(envelope()), offset=1), _record(raw(poison), offset=2)]
    report = await _service().route(batch)
    assert report.exports == 2
    assert report.invalid == 1
    (dead,) = [r for r in report.records if r.topic == DLQ]
    headers = dict(dead.headers)
    assert headers["qi.error.reason"] == b"internal_error"
    assert headers["qi.error.detail"] == b"mapping raised ZeroDivisionError"
    assert headers["qi.tenant_id"] == b"t_1"


async def test_an_unforeseen_exception_in_parsing_dead_letters_that_record_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = parse_domain_event

    def flaky(key: bytes | None, value: bytes | None, *, max_bytes: int) -> Any:
        if value == b"boom":
            raise MemoryError
        return real(key, value, max_bytes=max_bytes)

    monkeypatch.setattr(service_module, "parse_domain_event", flaky)
    report = await _service().route([_record(b"boom", offset=1), _record(raw(envelope()))])
    assert report.exports == 2
    (dead,) = [r for r in report.records if r.topic == DLQ]
    assert dict(dead.headers)["qi.error.detail"] == b"parsing raised MemoryError"


async def test_a_dead_letter_leaves_out_a_payload_over_the_cap() -> None:
    service = _service(max_event_bytes=4096, dlq_max_payload_bytes=10_000)
    big = b"x" * 20_000
    small = b"y" * 5_000
    report = await service.route([_record(big, offset=1), _record(small, offset=2)])
    by_offset = {dict(r.headers)["qi.original.offset"]: r for r in report.records}
    over, under = by_offset[b"1"], by_offset[b"2"]
    assert over.value == b""
    assert over.key == b"t_1"
    assert dict(over.headers)["qi.payload_included"] == b"false"
    assert dict(over.headers)["qi.payload_omitted"] == b"too_large"
    assert dict(over.headers)["qi.original.value_bytes"] == b"20000"
    assert under.value == small
    assert dict(under.headers)["qi.payload_included"] == b"true"
    assert "qi.payload_omitted" not in dict(under.headers)


async def test_a_key_over_the_cap_is_left_out_too() -> None:
    service = _service(max_event_bytes=4096, dlq_max_payload_bytes=1_000)
    report = await service.route([_record(b"{}", key=b"k" * 2_000)])
    (dead,) = report.records
    assert dead.key is None
    assert dead.value == b""
    assert dict(dead.headers)["qi.original.key_bytes"] == b"2000"


async def test_a_near_one_megabyte_record_gives_a_dead_letter_the_broker_takes() -> None:
    service = _service(max_event_bytes=512 * 1024)
    value = raw(envelope()) + b" " * 999_000
    report = await service.route([_record(value)])
    (dead,) = report.records
    size = len(dead.key or b"") + len(dead.value) + sum(len(n) + len(v) for n, v in dead.headers)
    assert size < RoutingSettings().dlq_max_payload_bytes + 2_000
    assert dict(dead.headers)["qi.error.reason"] == b"oversized"


async def test_a_refused_dead_letter_is_replaced_without_key_or_value_then_dropped() -> None:
    service = _service(max_event_bytes=4096)
    (dead,) = (await service.route([_record(b"{not json")])).records
    smaller = service.refused_as_too_large(dead)
    assert smaller is not None
    assert smaller.topic == DLQ
    assert smaller.key is None
    assert smaller.value == b""
    headers = dict(smaller.headers)
    assert headers["qi.error.reason"] == b"unparseable"
    assert headers["qi.payload_included"] == b"false"
    assert headers["qi.payload_omitted"] == b"refused_too_large"
    assert service.refused_as_too_large(smaller) is None


async def test_a_refused_export_is_replaced_by_a_dead_letter_of_its_source() -> None:
    service = _service()
    value = raw(envelope())
    report = await service.route([_record(value)])
    export = report.records[0]
    dead = service.refused_as_too_large(export)
    assert dead is not None
    assert dead.topic == DLQ
    assert dead.value == value
    headers = dict(dead.headers)
    assert headers["qi.error.reason"] == b"oversized"
    assert headers["qi.tenant_id"] == b"t_1"
    assert b"refused by the producer" in headers["qi.error.detail"]
    orphan = OutgoingRecord("p.integrations.exports.webhook", b"t_1", b"v", ())
    assert service.refused_as_too_large(orphan) is None


async def test_header_values_are_always_encodable() -> None:
    document = envelope(tenant_id="t_\ud800", event_type="company.exploded")
    value = json.dumps(document).encode()
    (dead,) = (await _service().route([_record(value, key=b"t_\xed\xa0\x80")])).records
    assert dict(dead.headers)["qi.error.reason"] == b"key_mismatch"
    assert "qi.tenant_id" not in dict(dead.headers)
