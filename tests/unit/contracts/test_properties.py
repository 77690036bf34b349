"""Property tests: arbitrary valid signals round-trip, arbitrary bytes never crash decode."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.contracts import (
    ContractDecodingError,
    ContractFamily,
    ContractMode,
    decode,
    default_registry,
    encode,
    to_json_dict,
)

SIGNAL = default_registry().latest(ContractFamily.SIGNAL)
DEFAULTS = {field["name"]: field["default"] for field in SIGNAL.raw["fields"] if "default" in field}

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
ids = st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12)
longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
doubles = st.floats(allow_nan=False)

reasons = st.fixed_dictionaries(
    {"code": ids, "description": texts, "evidence_ids": st.lists(ids, max_size=3)}
)
evidence = st.fixed_dictionaries(
    {"kind": ids, "id": ids, "url": st.none() | texts, "title": st.none() | texts}
)
signals: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "event_type": ids,
        "schema_version": st.just(SIGNAL.schema_version),
        "occurred_at": texts,
        "idempotency_key": ids,
        "tenant_id": ids,
        "connection_id": ids,
        "correlation_id": ids,
        "event_id": ids,
        "entity_version": longs,
        "signal_id": ids,
        "company_id": ids,
        "signal_type": ids,
        "contract_mode": st.sampled_from([mode.value for mode in ContractMode]),
        "contract_version": texts,
        "title": texts,
        "detected_at": texts,
    },
    optional={
        "person_ids": st.lists(ids, max_size=4),
        "summary": st.none() | texts,
        "score": st.none() | doubles,
        "reasons": st.lists(reasons, max_size=3),
        "evidence": st.lists(evidence, max_size=3),
        "decorations": st.fixed_dictionaries({"technology_tags": st.lists(ids, max_size=4)}),
    },
)


@given(signals)
def test_valid_signals_round_trip_exactly(record: dict[str, Any]) -> None:
    writer, decoded = decode(encode(SIGNAL, record), registry=default_registry())
    assert writer is SIGNAL
    assert decoded == {**DEFAULTS, **record}


@given(signals, st.sampled_from(list(ContractMode)))
def test_enum_members_encode_like_their_values(record: dict[str, Any], mode: ContractMode) -> None:
    as_member = encode(SIGNAL, {**record, "contract_mode": mode})
    assert as_member == encode(SIGNAL, {**record, "contract_mode": mode.value})


@given(signals.filter(lambda r: r.get("score") is None or abs(r["score"]) != float("inf")))
def test_decoded_signals_have_a_json_form(record: dict[str, Any]) -> None:
    _, decoded = decode(encode(SIGNAL, record), registry=default_registry())
    assert to_json_dict(decoded) == decoded


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_body_decodes_or_raises_a_decoding_error(body: bytes) -> None:
    data = b"\xc3\x01" + SIGNAL.fingerprint + body
    try:
        writer, decoded = decode(data, registry=default_registry())
    except ContractDecodingError:
        return  # any other exception fails the test
    assert writer is SIGNAL
    assert set(decoded) == {field["name"] for field in SIGNAL.raw["fields"]}
