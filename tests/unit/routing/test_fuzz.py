"""Property tests: whatever a record holds, parse -> map -> encode ends in exports or a dead letter.

The service under test is the real one (real parsing, mapping, contracts and encoding) with
connections held in memory. Every property asserts the same thing: routing one record returns
(it never raises), and if the record is not exported, it is one dead letter whose reason is a
known one *other than* ``internal_error``: the safety net that turns an unforeseen exception
into a dead letter must never be what handled a fuzzed input.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.contracts import decode, default_registry
from processors.routing.parsing import InvalidEventError, InvalidReason, parse_domain_event
from processors.routing.service import IncomingRecord, RoutingReport, RoutingService
from processors.settings import RoutingSettings
from processors.tenants.models import ConnectionRecord, TenantRouting
from processors.tenants.repository import ConnectionRepository
from processors.topics import TopicMap
from tests.unit.routing.conftest import envelope

EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DLQ = "p.integrations.dlq.invalid-events"
EVENT_TYPES = (
    "company.upserted",
    "company.deleted",
    "person.upserted",
    "person.deleted",
    "signal.emitted",
    "job_ad.published",
)
REGISTRY = default_registry()


class _Connections(ConnectionRepository):
    """Every tenant is allowlisted with a webhook connection and a HubSpot one in both modes."""

    def __init__(self) -> None:
        pass

    async def routing_for(self, tenant_ids: Iterable[str]) -> dict[str, TenantRouting]:
        routing = {}
        for tenant in set(tenant_ids):
            connections = [
                ConnectionRecord.model_validate(
                    {"tenant_id": tenant, "connector": "webhook", "connection_id": "c_w"}
                ),
                ConnectionRecord.model_validate(
                    {
                        "tenant_id": tenant,
                        "connector": "hubspot",
                        "connection_id": "c_h",
                        "delivery_mode": "both",
                    }
                ),
            ]
            routing[tenant] = TenantRouting(tenant, True, connections)
        return routing


SERVICE = RoutingService(
    topics=TopicMap("p."),
    connections=_Connections(),
    registry=REGISTRY,
    settings=RoutingSettings(max_event_bytes=256 * 1024, dlq_max_payload_bytes=64 * 1024),
)

# Text with every code point, lone surrogates included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
HUGE = "<an integer of 4,400 digits>"
"""Python cannot even repr such an int, so it is spliced into the JSON text by :func:`_dumps`."""
huge_ints = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**300]), st.just(HUGE)
)
numbers = st.one_of(
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59+00:00",
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00-23:59",
            "2026-02-30T00:00:00Z",
            "2026-11-26T05:00:00",
            "2026-11-26T05:00:00.123456789Z",
            "+2026-11-26T05:00:00Z",
            "",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text, timestamps)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "tenant_id",
    "occurred_at",
    "correlation_id",
    "data",
)
DATA_FIELDS = (
    "version",
    "company_id",
    "person_id",
    "signal_id",
    "job_ad_id",
    "name",
    "domains",
    "emails",
    "employee_count",
    "contract_mode",
    "contract_version",
    "title",
    "score",
    "reasons",
    "evidence",
    "decorations",
    "detected_at",
    "posted_at",
    "person_ids",
)
field_values = st.one_of(
    json_values,
    timestamps,
    huge_ints,
    st.sampled_from(["1.0", "1." + "0" * 5_000, "1" * 5_000 + ".0", "t_1", "strict", "legacy"]),
)


def _dumps(document: Any) -> bytes:
    text = json.dumps(document, allow_nan=True)
    return text.replace(json.dumps(HUGE), "-" + "9" * 4_400).encode()


def _route(value: bytes | None, key: bytes | None = b"t_1") -> RoutingReport:
    record = IncomingRecord("p.queast.domain-events", 0, 0, key, value)
    return asyncio.run(SERVICE.route([record]))


def _check(report: RoutingReport) -> None:
    reasons = {r.value for r in InvalidReason} - {InvalidReason.INTERNAL_ERROR.value}
    for record in report.records:
        assert isinstance(record.value, bytes)
        assert all(isinstance(v, bytes) for _n, v in record.headers)
        if record.topic == DLQ:
            assert dict(record.headers)["qi.error.reason"].decode() in reasons
        else:
            _schema, contract = decode(record.value, registry=REGISTRY)
            assert record.key is not None
            assert contract["tenant_id"] == record.key.decode()
    assert report.invalid + (report.exports > 0) + report.skipped == 1


def _parse_only_invalid(value: bytes, key: bytes | None = b"t_1") -> None:
    with contextlib.suppress(InvalidEventError):
        parse_domain_event(key, value, max_bytes=256 * 1024)


@EXAMPLES
@given(st.binary(max_size=2_000), st.one_of(st.none(), st.just(b"t_1"), st.binary(max_size=80)))
def test_arbitrary_bytes(value: bytes, key: bytes | None) -> None:
    _parse_only_invalid(value, key)
    _check(_route(value, key))


@EXAMPLES
@given(json_values)
def test_arbitrary_json(document: Any) -> None:
    value = _dumps(document)
    _parse_only_invalid(value)
    _check(_route(value))


_COLLECTED: list[bool] = []
"""Whether this process has run its full collection before a deep parse."""


@EXAMPLES
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":', '{"data":[']))
def test_deep_nesting(depth: int, opener: str) -> None:
    # Garbage left by earlier tests in this process is finalised now, at a shallow stack:
    # an unraisable warning from a finaliser that ran inside the deep parse below could not
    # even be formatted (pytest's hook runs out of stack), and would fail this test. A full
    # collection once per process is enough for what earlier tests left; each example then
    # collects only the young generations its predecessors filled (a full collection of a
    # long-lived test process's heap per example cost most of this test's time).
    gc.collect(generation=1 if _COLLECTED else 2)
    _COLLECTED.append(True)
    closer = {"[": "]", '{"a":': "}", '{"data":[': "]}"}[opener]
    value = (opener * depth + "1" + closer * depth).encode()
    _check(_route(value))


@EXAMPLES
@given(
    st.sampled_from(EVENT_TYPES),
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=3),
    st.dictionaries(st.sampled_from(DATA_FIELDS), field_values, max_size=4),
    st.booleans(),
)
def test_envelopes_with_fuzzed_fields(
    event_type: str, top: dict[str, Any], data: dict[str, Any], keep_tenant: bool
) -> None:
    document = envelope(event_type)
    if isinstance(document.get("data"), dict):
        document["data"] = {**document["data"], **data}
    document.update(top)
    if keep_tenant:
        document["tenant_id"] = "t_1"
    value = _dumps(document)
    _parse_only_invalid(value)
    _check(_route(value))


@EXAMPLES
@given(
    st.sampled_from(EVENT_TYPES),
    st.lists(st.tuples(st.sampled_from(FIELDS), field_values), min_size=1, max_size=4),
)
def test_duplicate_keys(event_type: str, duplicates: list[tuple[str, Any]]) -> None:
    document = envelope(event_type)
    pairs = [*document.items(), *duplicates, *reversed(duplicates)]
    value = b"{" + b", ".join(_dumps(k) + b": " + _dumps(v) for k, v in pairs) + b"}"
    _parse_only_invalid(value)
    _check(_route(value))


@EXAMPLES
@given(st.sampled_from(EVENT_TYPES), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
def test_non_finite_numbers_in_every_numeric_field(event_type: str, literal: str) -> None:
    document = envelope(event_type)
    document["data"] = {**document["data"], "version": 0, "score": 0.5, "employee_count": 1}
    text = json.dumps(document)
    for field in ("version", "score", "employee_count"):
        patched = text.replace(f'"{field}": ', f'"{field}": {literal}, "_{field}": ', 1)
        report = _route(patched.encode())
        _check(report)
        if field == "version":
            assert report.invalid == 1
