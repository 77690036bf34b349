"""Single-object encoding: round trips, the header, and every way decoding can fail."""

from __future__ import annotations

import io
import json
import math
import re
from enum import Enum

import pytest
from fastavro import schemaless_writer

from processors.contracts import (
    HEADER_SIZE,
    MAGIC,
    ContractDecodingError,
    ContractEncodingError,
    ContractError,
    ContractFamily,
    ContractMode,
    ContractRegistry,
    ContractSchema,
    decode,
    default_registry,
    encode,
    peek_fingerprint,
    to_json_dict,
)
from tests.unit.contracts.records import MINIMAL, MINIMAL_DEFAULTS, POPULATED

FAMILIES = list(ContractFamily)


@pytest.fixture
def registry() -> ContractRegistry:
    return default_registry()


def _latest(family: ContractFamily) -> ContractSchema:
    return default_registry().latest(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_populated_record_round_trips(registry: ContractRegistry, family: ContractFamily) -> None:
    schema = _latest(family)
    record = POPULATED[family]
    writer, decoded = decode(encode(schema, record), registry=registry)
    assert writer is schema
    assert decoded == record
    assert list(decoded) == [field["name"] for field in schema.raw["fields"]]


@pytest.mark.parametrize("family", FAMILIES)
def test_minimal_record_round_trips_with_defaults(
    registry: ContractRegistry, family: ContractFamily
) -> None:
    schema = _latest(family)
    _, decoded = decode(encode(schema, MINIMAL[family]), registry=registry)
    assert decoded == {**MINIMAL[family], **MINIMAL_DEFAULTS[family]}


def test_company_deleted_carries_only_id_and_version(registry: ContractRegistry) -> None:
    schema = _latest(ContractFamily.COMPANY)
    record = {**MINIMAL[ContractFamily.COMPANY], "event_type": "company.deleted", "deleted": True}
    _, decoded = decode(encode(schema, record), registry=registry)
    assert decoded["deleted"] is True
    assert decoded["name"] is None
    assert decoded["entity_version"] == 17


@pytest.mark.parametrize("family", FAMILIES)
def test_header_is_marker_then_little_endian_fingerprint(family: ContractFamily) -> None:
    schema = _latest(family)
    data = encode(schema, POPULATED[family])
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert data[2:HEADER_SIZE] == schema.fingerprint
    assert peek_fingerprint(data) == schema.fingerprint
    body = io.BytesIO()
    schemaless_writer(body, schema.parsed, POPULATED[family])
    assert data[HEADER_SIZE:] == body.getvalue()


def test_enums_come_back_as_plain_strings(registry: ContractRegistry) -> None:
    record = POPULATED[ContractFamily.SIGNAL]
    assert isinstance(record["contract_mode"], ContractMode)
    _, decoded = decode(encode(_latest(ContractFamily.SIGNAL), record), registry=registry)
    assert decoded["contract_mode"] == "strict"
    assert type(decoded["contract_mode"]) is str


def test_decode_into_an_explicit_reader(registry: ContractRegistry) -> None:
    schema = _latest(ContractFamily.PERSON)
    writer, decoded = decode(
        encode(schema, POPULATED[ContractFamily.PERSON]), registry=registry, reader=schema
    )
    assert writer is schema
    assert decoded == POPULATED[ContractFamily.PERSON]


def test_decode_into_a_reader_of_another_family_fails(registry: ContractRegistry) -> None:
    data = encode(_latest(ContractFamily.PERSON), POPULATED[ContractFamily.PERSON])
    with pytest.raises(ContractDecodingError, match=r"person v1\.0 data cannot be read as company"):
        decode(data, registry=registry, reader=_latest(ContractFamily.COMPANY))


# --- decoding failures ------------------------------------------------------------------


def _valid() -> bytes:
    return encode(_latest(ContractFamily.SIGNAL), POPULATED[ContractFamily.SIGNAL])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"truncated single-object header: 0 bytes, need at least 10"),
        (b"\xc3\x01\x00\x01", r"truncated single-object header: 4 bytes"),
        (b"\x00\x01" + b"\x00" * 20, r"not Avro single-object encoded: marker is 00 01"),
        (b'{"json": "instead"}', r"not Avro single-object encoded: marker is 7b 22"),
        (b"\xc3\x01" + b"\xde\xad\xbe\xef" * 2 + b"\x00", r"unknown schema fingerprint deadbeef"),
    ],
)
def test_bad_headers_are_rejected(registry: ContractRegistry, data: bytes, message: str) -> None:
    with pytest.raises(ContractDecodingError, match=message):
        decode(data, registry=registry)


def test_header_without_body_is_truncated(registry: ContractRegistry) -> None:
    with pytest.raises(ContractDecodingError, match=r"truncated signal v1\.0 record"):
        decode(_valid()[:HEADER_SIZE], registry=registry)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body_is_rejected(registry: ContractRegistry, cut: int) -> None:
    with pytest.raises(ContractDecodingError, match=r"truncated signal v1\.0 record"):
        decode(_valid()[:-cut], registry=registry)


def test_trailing_bytes_are_rejected(registry: ContractRegistry) -> None:
    with pytest.raises(ContractDecodingError, match="3 trailing bytes after the record"):
        decode(_valid() + b"\x00\x00\x00", registry=registry)


def test_garbage_body_is_rejected(registry: ContractRegistry) -> None:
    header = _valid()[:HEADER_SIZE]
    # A string length of 2, then bytes that are not UTF-8.
    with pytest.raises(ContractDecodingError, match=r"corrupt signal v1\.0 record body"):
        decode(header + b"\x04\xff\xfe" + b"\x00" * 40, registry=registry)


def test_decoding_errors_are_contract_errors() -> None:
    assert issubclass(ContractDecodingError, ContractError)
    assert issubclass(ContractEncodingError, ContractError)


# --- encoding failures ------------------------------------------------------------------


def _signal(**changes: object) -> dict[str, object]:
    return {**POPULATED[ContractFamily.SIGNAL], **changes}


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (
            {k: v for k, v in _signal().items() if k != "signal_id"},
            "signal_id",
            "field 'signal_id': missing required field",
        ),
        (
            {k: v for k, v in _signal().items() if k != "tenant_id"},
            "tenant_id",
            "missing required field",
        ),
        (_signal(entity_version="17"), "entity_version", "expected long, got str"),
        (_signal(entity_version=2**63), "entity_version", "expected long, got int out of range"),
        (_signal(entity_version=True), "entity_version", "expected long, got bool"),
        (_signal(score="high"), "score", "expected double, got str"),
        (_signal(summary=3), "summary", "expected string, got int"),
        (_signal(title=None), "title", "expected string, got null"),
        (_signal(contract_mode="smart"), "contract_mode", "expected a ContractMode symbol"),
        (_signal(person_ids="per-1"), "person_ids", "expected array<string>, got str"),
        (
            _signal(reasons=[{"code": 1, "description": "d", "evidence_ids": []}]),
            "reasons[0].code",
            "expected string, got int",
        ),
        (
            _signal(evidence=[{"kind": "job_ad"}]),
            "evidence[0].id",
            "missing required field",
        ),
        (
            _signal(decorations={"technology_tags": ["ok", None]}),
            "decorations.technology_tags[1]",
            "expected string, got null",
        ),
        (_signal(decorations=None), "decorations", "expected SignalDecorations, got null"),
        (_signal(technology_tags=["x"]), "technology_tags", "unknown field, not in Signal"),
        (_signal(schema_version="1.1"), "schema_version", "must be '1.0' for this schema"),
    ],
)
def test_records_that_do_not_fit_are_rejected(
    record: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ContractEncodingError, match=message) as caught:
        encode(_latest(ContractFamily.SIGNAL), record)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)
    assert str(caught.value).startswith("signal v1.0: ")


def test_encoding_errors_do_not_leak_values() -> None:
    person = {**POPULATED[ContractFamily.PERSON], "email": ["jana.secret@acme.example"]}
    with pytest.raises(ContractEncodingError, match="field 'email'") as caught:
        encode(_latest(ContractFamily.PERSON), person)
    assert "secret" not in str(caught.value)
    assert caught.value.__cause__ is None


# --- JSON view ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_decoded_records_are_json_ready(registry: ContractRegistry, family: ContractFamily) -> None:
    _, decoded = decode(encode(_latest(family), POPULATED[family]), registry=registry)
    plain = to_json_dict(decoded)
    assert plain == decoded
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain


def test_to_json_dict_normalises_python_values() -> None:
    class Colour(Enum):
        RED = "red"

    plain = to_json_dict(
        {"mode": ContractMode.STRICT, "colour": Colour.RED, "ids": ("a", "b"), "nested": {"n": 1}}
    )
    assert plain == {"mode": "strict", "colour": "red", "ids": ["a", "b"], "nested": {"n": 1}}
    assert type(plain["mode"]) is str


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"score": math.nan}, "score"),
        ({"reasons": [{"weight": math.inf}]}, "reasons[0].weight"),
        ({"blob": b"\x00"}, "blob"),
        ({"nested": {1: "x"}}, "nested"),
    ],
)
def test_to_json_dict_rejects_what_json_cannot_carry(record: dict[str, object], field: str) -> None:
    with pytest.raises(ContractEncodingError, match=re.escape(f"field '{field}'")) as caught:
        to_json_dict(record)
    assert caught.value.field == field
