"""Compatibility: the bundled families, and synthetic pairs that must fail."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from processors.contracts import (
    NAMESPACE,
    ContractFamily,
    ContractRegistry,
    ContractSchema,
    IncompatibleSchemaError,
    check_additive,
    check_compatible,
    check_family_compatibility,
    decode,
    default_registry,
    encode,
    representative_records,
)

BUNDLED = list(default_registry())
SAME_MAJOR_PAIRS = [
    (older, newer)
    for older, newer in itertools.combinations(BUNDLED, 2)
    if (older.family, older.major) == (newer.family, newer.major)
]


def _record(*fields: dict[str, Any], name: str = "Thing") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": NAMESPACE, "fields": list(fields)}


ID = {"name": "id", "type": "string"}
BASE = _record(ID)


# --- the bundled contracts ----------------------------------------------------------------


def test_every_family_is_compatible_within_its_major() -> None:
    check_family_compatibility(default_registry())


@pytest.mark.parametrize("contract", BUNDLED, ids=lambda c: c.label)
def test_every_version_reads_its_own_data(contract: ContractSchema) -> None:
    check_compatible(contract, contract)


def test_same_major_pairs_are_the_ones_checked() -> None:
    """The family check walks exactly the same-major pairs (none while each family has v1 only;
    the synthetic registries below give it pairs that pass and pairs that fail)."""
    families = {(c.family, c.major) for c in BUNDLED}
    assert len(SAME_MAJOR_PAIRS) == sum(
        len(list(itertools.combinations([c for c in BUNDLED if (c.family, c.major) == fm], 2)))
        for fm in families
    )
    for older, newer in SAME_MAJOR_PAIRS:
        check_compatible(older, newer)
        check_compatible(newer, older)
        check_additive(older, newer)


# --- synthetic pairs ----------------------------------------------------------------------


def test_field_added_without_default_breaks_reading_old_data() -> None:
    added = _record(ID, {"name": "region", "type": "string"})
    with pytest.raises(IncompatibleSchemaError, match="No default value for field region"):
        check_compatible(BASE, added)
    # New data is still readable by the old schema: the extra field is skipped.
    check_compatible(added, BASE)


def test_field_added_with_default_is_compatible_both_ways() -> None:
    added = _record(ID, {"name": "region", "type": ["null", "string"], "default": None})
    check_compatible(BASE, added)
    check_compatible(added, BASE)
    check_additive(BASE, added)


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        (BASE, _record({"name": "id", "type": "long"})),
        (_record({"name": "id", "type": "long"}), BASE),
    ],
    ids=["string->long", "long->string"],
)
def test_type_change_is_incompatible_both_ways(
    writer: dict[str, Any], reader: dict[str, Any]
) -> None:
    with pytest.raises(
        IncompatibleSchemaError, match=r"Thing cannot be read with \S+Thing: Schema mismatch"
    ):
        check_compatible(writer, reader)


def test_type_change_inside_an_optional_field_is_incompatible() -> None:
    writer = _record(ID, {"name": "n", "type": ["null", "string"], "default": None})
    reader = _record(ID, {"name": "n", "type": ["null", "long"], "default": None})
    # The minimal sample (n = null) resolves; the populated one (n = "…") must not.
    with pytest.raises(IncompatibleSchemaError, match="populated"):
        check_compatible(writer, reader)


def test_enum_symbol_removed_is_caught_by_every_symbol_being_sampled() -> None:
    def with_symbols(*symbols: str) -> dict[str, Any]:
        enum = {"type": "enum", "name": "Mode", "symbols": list(symbols)}
        return _record(ID, {"name": "mode", "type": enum})

    wide, narrow = with_symbols("strict", "informational", "legacy"), with_symbols("strict")
    with pytest.raises(
        IncompatibleSchemaError, match=r"(legacy|informational) not found in reader"
    ):
        check_compatible(wide, narrow)
    check_compatible(narrow, wide)


def test_union_branch_removed_is_incompatible() -> None:
    wide = _record({"name": "v", "type": ["null", "string", "long", "boolean"]})
    narrow = _record({"name": "v", "type": ["null", "string"]})
    with pytest.raises(IncompatibleSchemaError):
        check_compatible(wide, narrow)
    check_compatible(narrow, wide)


def test_nested_record_change_is_incompatible() -> None:
    def reasons(code_type: str) -> dict[str, Any]:
        item = {"type": "record", "name": "Reason", "fields": [{"name": "code", "type": code_type}]}
        return _record({"name": "reasons", "type": {"type": "array", "items": item}, "default": []})

    with pytest.raises(IncompatibleSchemaError):
        check_compatible(reasons("string"), reasons("long"))


def test_renamed_record_is_incompatible() -> None:
    with pytest.raises(IncompatibleSchemaError):
        check_compatible(BASE, _record(ID, name="Other"))


def test_removing_a_defaulted_field_resolves_but_is_not_additive() -> None:
    with_region = _record(ID, {"name": "region", "type": ["null", "string"], "default": None})
    check_compatible(with_region, BASE)
    check_compatible(BASE, with_region)
    with pytest.raises(IncompatibleSchemaError, match=r"removes .*field Thing\.region"):
        check_additive(with_region, BASE)


def test_removing_an_enum_symbol_is_not_additive() -> None:
    def with_symbols(*symbols: str) -> dict[str, Any]:
        enum = {"type": "enum", "name": "Mode", "symbols": list(symbols), "default": symbols[0]}
        return _record(ID, {"name": "mode", "type": enum})

    with pytest.raises(IncompatibleSchemaError, match=r"symbol Mode\.legacy"):
        check_additive(with_symbols("strict", "legacy"), with_symbols("strict"))


# --- family checks on a registry with several versions ----------------------------------


def _family_dir(tmp_path: Path, versions: dict[str, dict[str, Any]]) -> ContractRegistry:
    (tmp_path / "company").mkdir()
    for version, schema in versions.items():
        path = tmp_path / "company" / f"company.{version}.avsc"
        path.write_text(json.dumps(schema), encoding="utf-8")
    return ContractRegistry.load(schema_dir=tmp_path)


def _company(*extra: dict[str, Any]) -> dict[str, Any]:
    header = [
        {"name": "schema_version", "type": "string"},
        {"name": "company_id", "type": "string"},
    ]
    return _record(*header, *extra, name="Company")


INDUSTRY = {"name": "industry", "type": ["null", "string"], "default": None}


def test_additive_minor_version_passes(tmp_path: Path) -> None:
    registry = _family_dir(tmp_path, {"v1": _company(), "v1_1": _company(INDUSTRY)})
    check_family_compatibility(registry)


def test_old_data_reads_with_the_new_minor_and_back(tmp_path: Path) -> None:
    registry = _family_dir(tmp_path, {"v1": _company(), "v1_1": _company(INDUSTRY)})
    old, new = registry.versions(ContractFamily.COMPANY)
    writer, decoded = decode(
        encode(old, {"schema_version": "1.0", "company_id": "c"}), registry=registry
    )
    assert writer is old
    assert decoded == {"schema_version": "1.0", "company_id": "c", "industry": None}
    data = encode(new, {"schema_version": "1.1", "company_id": "c", "industry": "Retail"})
    _, decoded = decode(data, registry=registry, reader=old)
    assert decoded == {"schema_version": "1.1", "company_id": "c"}


@pytest.mark.parametrize(
    ("v1_1", "message"),
    [
        (_company({"name": "industry", "type": "string"}), "No default value for field industry"),
        (
            _record(
                {"name": "schema_version", "type": "string"},
                {"name": "company_id", "type": "long"},
                name="Company",
            ),
            "Schema mismatch",
        ),
        (
            _record({"name": "schema_version", "type": "string"}, name="Company"),
            "removes what company v1.0 has: field Company.company_id",
        ),
    ],
    ids=["added-without-default", "type-change", "removal"],
)
def test_breaking_minor_version_fails(tmp_path: Path, v1_1: dict[str, Any], message: str) -> None:
    registry = _family_dir(tmp_path, {"v1": _company(), "v1_1": v1_1})
    with pytest.raises(IncompatibleSchemaError, match=message):
        check_family_compatibility(registry)


def test_new_major_is_not_held_to_the_old_one(tmp_path: Path) -> None:
    v2 = _record(
        {"name": "schema_version", "type": "string"},
        {"name": "company_id", "type": "long"},
        name="Company",
    )
    registry = _family_dir(tmp_path, {"v1": _company(), "v2": v2})
    with pytest.raises(IncompatibleSchemaError):
        check_compatible(registry.get("company", "1.0"), registry.get("company", "2.0"))
    check_family_compatibility(registry)


# --- representative records ---------------------------------------------------------------


def test_representative_records_use_every_symbol_and_branch() -> None:
    signal = default_registry().latest(ContractFamily.SIGNAL)
    records = representative_records(signal)
    assert {record["contract_mode"] for record in records} == {"strict", "informational", "legacy"}
    assert {type(record["score"]) for record in records} == {type(None), float}
    assert records[0]["reasons"] == []
    assert records[1]["reasons"] != []


@pytest.mark.parametrize("family", list(ContractFamily))
def test_representative_records_round_trip(family: ContractFamily) -> None:
    contract = default_registry().latest(family)
    records = representative_records(contract)
    assert len(records) >= 2
    for record in records:
        fitted = {**record, "schema_version": contract.schema_version}
        _, decoded = decode(encode(contract, fitted), registry=default_registry())
        assert decoded == fitted
