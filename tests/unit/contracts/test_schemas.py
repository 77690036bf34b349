"""Registry loading and the rules every bundled schema file follows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from processors.contracts import (
    DEFAULT_SCHEMA_DIR,
    NAMESPACE,
    ContractFamily,
    ContractMode,
    ContractRegistry,
    ContractSchema,
    ContractSchemaError,
    UnknownContractError,
    default_registry,
    load_contract,
    load_contracts,
    parse_file_name,
)

HEADER_FIELDS: list[tuple[str, str]] = [
    ("event_type", "string"),
    ("schema_version", "string"),
    ("occurred_at", "string"),
    ("idempotency_key", "string"),
    ("tenant_id", "string"),
    ("connection_id", "string"),
    ("correlation_id", "string"),
    ("event_id", "string"),
    ("entity_version", "long"),
]

REQUIRED_ENTITY_FIELDS: dict[ContractFamily, set[str]] = {
    ContractFamily.COMPANY: {"company_id"},
    ContractFamily.PERSON: {"person_id"},
    ContractFamily.SIGNAL: {
        "signal_id",
        "company_id",
        "signal_type",
        "contract_mode",
        "contract_version",
        "title",
        "detected_at",
    },
    ContractFamily.JOB_AD_EVIDENCE: {"job_ad_id", "company_id"},
}

BUNDLED = list(default_registry())


def _crc64_avro(data: bytes) -> int:
    """Reference CRC-64-AVRO (Rabin) from the Avro specification, as an unsigned int."""
    empty = 0xC15D213AA4D7A795
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def _record(name: str, fields: list[dict[str, Any]], **extra: object) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": NAMESPACE, "fields": fields, **extra}


def _write(root: Path, relative: str, schema: object) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema), encoding="utf-8")
    return path


def _company(*extra_fields: dict[str, Any]) -> dict[str, Any]:
    return _record("Company", [{"name": "company_id", "type": "string"}, *extra_fields])


def _optional(name: str, avro_type: str = "string") -> dict[str, Any]:
    return {"name": name, "type": ["null", avro_type], "default": None}


def _all_fields(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of every record defined in a raw schema, as (record name, field)."""
    pending: list[object] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                for field in node["fields"]:
                    yield node["name"], field
                    pending.append(field["type"])
            elif node.get("type") == "array":
                pending.append(node["items"])
            elif node.get("type") == "map":
                pending.append(node["values"])


# --- the bundled schemas ----------------------------------------------------------------


def test_every_bundled_file_is_loaded() -> None:
    files = sorted(DEFAULT_SCHEMA_DIR.rglob("*.avsc"))
    assert len(files) >= 4
    assert sorted(contract.path for contract in BUNDLED if contract.path) == files
    assert len(default_registry()) == len(files)


def test_every_family_has_a_v1() -> None:
    registry = default_registry()
    assert registry.families() == list(ContractFamily)
    for family in ContractFamily:
        first = registry.versions(family)[0]
        assert (first.major, first.minor, first.schema_version) == (1, 0, "1.0")
        assert first.path == DEFAULT_SCHEMA_DIR / family.value / f"{family.value}.v1.avsc"


def test_default_registry_is_cached() -> None:
    assert default_registry() is default_registry()


@pytest.mark.parametrize("contract", BUNDLED, ids=lambda c: c.label)
def test_header_fields_come_first(contract: ContractSchema) -> None:
    fields = contract.raw["fields"]
    header = [(field["name"], field["type"]) for field in fields[: len(HEADER_FIELDS)]]
    assert header == HEADER_FIELDS
    assert all("default" not in field for field in fields[: len(HEADER_FIELDS)])


@pytest.mark.parametrize("contract", BUNDLED, ids=lambda c: c.label)
def test_required_and_optional_entity_fields(contract: ContractSchema) -> None:
    entity = contract.raw["fields"][len(HEADER_FIELDS) :]
    required = {field["name"] for field in entity if "default" not in field}
    assert required == REQUIRED_ENTITY_FIELDS[contract.family]
    for field in entity:
        avro_type = field["type"]
        if isinstance(avro_type, list):
            assert avro_type[0] == "null", field["name"]
            assert field["default"] is None, field["name"]
        elif isinstance(avro_type, dict) and avro_type["type"] == "array":
            assert field.get("default") == [], field["name"]


@pytest.mark.parametrize("contract", BUNDLED, ids=lambda c: c.label)
def test_every_record_and_field_has_a_doc(contract: ContractSchema) -> None:
    assert contract.raw["doc"].strip()
    for record_name, field in _all_fields(contract.raw):
        assert str(field.get("doc", "")).strip(), f"{record_name}.{field['name']} has no doc"


@pytest.mark.parametrize("contract", BUNDLED, ids=lambda c: c.label)
def test_fingerprint_is_crc64_avro_of_the_canonical_form(contract: ContractSchema) -> None:
    canonical = to_parsing_canonical_form(contract.raw).encode()
    assert contract.fingerprint == _crc64_avro(canonical).to_bytes(8, "little")
    assert contract.record_name == f"{NAMESPACE}.{contract.raw['name']}"


def test_reference_crc64_matches_the_avro_test_vector() -> None:
    # Known value from the Avro reference implementations for the schema "null".
    assert _crc64_avro(b'"null"') == 7195948357588979594


def test_signal_contract_follows_the_causal_model() -> None:
    signal = default_registry().latest(ContractFamily.SIGNAL)
    doc = signal.raw["doc"]
    assert "https://docs.queast.com/signals" in doc
    assert "Smart Signals are Actionable Signals (contract_mode = strict)" in doc
    assert "technology tags are decorations only and never reasons" in doc
    fields = {field["name"]: field for field in signal.raw["fields"]}
    assert fields["contract_mode"]["type"]["symbols"] == [mode.value for mode in ContractMode]
    assert fields["decorations"]["default"] == {"technology_tags": []}
    reason_fields = {field["name"] for field in fields["reasons"]["type"]["items"]["fields"]}
    assert reason_fields == {"code", "description", "evidence_ids"}
    assert "technology_tags" not in json.dumps(fields["reasons"])


def test_job_ads_are_evidence_not_signals() -> None:
    job_ad = default_registry().latest(ContractFamily.JOB_AD_EVIDENCE)
    assert "never as signals" in job_ad.raw["doc"]


# --- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("company.v1.avsc", ("company", 1, 0)),
        ("company.v1_2.avsc", ("company", 1, 2)),
        ("job_ad_evidence.v12_30.avsc", ("job_ad_evidence", 12, 30)),
    ],
)
def test_parse_file_name(file_name: str, expected: tuple[str, int, int]) -> None:
    assert parse_file_name(file_name) == expected


MALFORMED_NAMES = [
    "company.avsc",
    "company.v0.avsc",
    "company.v01.avsc",
    "company.v1_0.avsc",
    "company.v1_02.avsc",
    "company.v1.1.avsc",
    "company.V1.avsc",
    "Company.v1.avsc",
    "company-v1.avsc",
    "company.v1_.avsc",
    "company.v1.avsc.avsc",
    ".v1.avsc",
]


@pytest.mark.parametrize("file_name", MALFORMED_NAMES)
def test_malformed_file_names_are_rejected(file_name: str) -> None:
    with pytest.raises(ContractSchemaError, match="malformed contract file name"):
        parse_file_name(file_name)


@pytest.mark.parametrize("file_name", MALFORMED_NAMES)
def test_loading_rejects_malformed_file_names(tmp_path: Path, file_name: str) -> None:
    _write(tmp_path, "company/company.v1.avsc", _company())
    _write(tmp_path, f"company/{file_name}", _company(_optional("name")))
    with pytest.raises(ContractSchemaError, match="malformed contract file name"):
        load_contracts(schema_dir=tmp_path)


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("widgets/widgets.v1.avsc", "unknown contract family directory 'widgets'"),
        ("company/person.v1.avsc", "must start with its family 'company'"),
        ("company.v1.avsc", "one directory deep"),
        ("company/nested/company.v1.avsc", "one directory deep"),
    ],
)
def test_files_in_the_wrong_place_are_rejected(tmp_path: Path, relative: str, message: str) -> None:
    _write(tmp_path, relative, _company())
    with pytest.raises(ContractSchemaError, match=message):
        load_contracts(schema_dir=tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read schema JSON"),
        ('["null", "string"]', "must be a JSON object"),
        (json.dumps({**_company(), "namespace": "com.example"}), "namespace"),
        (json.dumps({"type": "enum", "name": "E", "symbols": ["a"]}), "must be a record"),
        (
            json.dumps(_company({"name": "x", "type": "NoSuchType"})),
            "invalid Avro schema",
        ),
        (
            json.dumps(_company({"name": "n", "type": "long", "default": "not a long"})),
            "invalid Avro schema",
        ),
    ],
)
def test_invalid_schema_content_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "company").mkdir()
    (tmp_path / "company" / "company.v1.avsc").write_text(content, encoding="utf-8")
    with pytest.raises(ContractSchemaError, match=message):
        load_contracts(schema_dir=tmp_path)


def test_missing_schema_dir_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ContractSchemaError, match="does not exist"):
        load_contracts(schema_dir=tmp_path / "nope")


def test_versions_with_the_same_canonical_form_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "company/company.v1.avsc", _company())
    # Only a doc differs: same Parsing Canonical Form, same fingerprint.
    _write(tmp_path, "company/company.v1_1.avsc", {**_company(), "doc": "changed"})
    with pytest.raises(ContractSchemaError, match="same canonical form"):
        ContractRegistry.load(schema_dir=tmp_path)


def test_the_same_version_twice_is_rejected() -> None:
    contract = default_registry().latest(ContractFamily.COMPANY)
    with pytest.raises(ContractSchemaError, match="defined twice"):
        ContractRegistry([contract, contract])


# --- lookups ------------------------------------------------------------------------------


@pytest.fixture
def versioned(tmp_path: Path) -> ContractRegistry:
    """company 1.0, 1.1, 1.2, 1.10 and 2.0, written in shuffled order; person 1.0."""
    fields: list[dict[str, Any]] = []
    for index, version in enumerate(["v1", "v1_1", "v1_2", "v1_10"]):
        if index:
            fields.append(_optional(f"added_in_{version}"))
        _write(tmp_path, f"company/company.{version}.avsc", _company(*fields))
    _write(tmp_path, "company/company.v2.avsc", _record("Company", [_optional("id")]))
    _write(tmp_path, "person/person.v1.avsc", _record("Person", [_optional("person_id")]))
    return ContractRegistry.load(schema_dir=tmp_path)


def test_versions_sort_numerically(versioned: ContractRegistry) -> None:
    versions = [c.schema_version for c in versioned.versions(ContractFamily.COMPANY)]
    assert versions == ["1.0", "1.1", "1.2", "1.10", "2.0"]
    assert [c.schema_version for c in versioned.versions("company", major=1)] == versions[:4]


def test_latest_picks_the_highest_version(versioned: ContractRegistry) -> None:
    assert versioned.latest(ContractFamily.COMPANY).schema_version == "2.0"
    assert versioned.latest("company", major=1).schema_version == "1.10"
    assert versioned.latest(ContractFamily.PERSON).schema_version == "1.0"


def test_families_lists_only_loaded_families(versioned: ContractRegistry) -> None:
    assert versioned.families() == [ContractFamily.COMPANY, ContractFamily.PERSON]
    assert len(versioned) == 6
    assert [c.label for c in versioned][-1] == "person v1.0"


def test_get_and_by_fingerprint(versioned: ContractRegistry) -> None:
    contract = versioned.get("company", "1.2")
    assert contract.version == (1, 2)
    assert versioned.by_fingerprint(contract.fingerprint) is contract
    assert len({c.fingerprint for c in versioned}) == len(versioned)


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda r: r.latest(ContractFamily.SIGNAL), "no contract versions for signal"),
        (lambda r: r.latest("company", major=3), "no contract versions for company v3"),
        (lambda r: r.latest("widgets"), "unknown contract family 'widgets'"),
        (lambda r: r.get("company", "1.3"), "no contract company v1.3"),
        (lambda r: r.get("company", "v1"), "malformed schema version"),
        (lambda r: r.by_fingerprint(b"\x00" * 8), "no contract has fingerprint 0000000000000000"),
    ],
)
def test_unknown_lookups_raise(
    versioned: ContractRegistry, lookup: Callable[[ContractRegistry], object], message: str
) -> None:
    with pytest.raises(UnknownContractError, match=message):
        lookup(versioned)


def test_contract_schema_is_hashable_and_compares_by_identity_fields() -> None:
    contract = default_registry().latest(ContractFamily.SIGNAL)
    again = ContractSchema.from_dict(contract.raw, family=ContractFamily.SIGNAL, major=1, minor=0)
    assert again == contract
    assert hash(again) == hash(contract)
    assert again.label == "signal v1.0"


def test_load_contract_outside_the_schema_dir_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "company/company.v1.avsc", _company())
    with pytest.raises(ContractSchemaError, match="is not inside"):
        load_contract(path, schema_dir=tmp_path / "elsewhere")


def test_load_contract_reads_one_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "company/company.v1_3.avsc", _company())
    contract = load_contract(path, schema_dir=tmp_path)
    assert (contract.family, contract.name, contract.schema_version) == (
        "company",
        "company",
        "1.3",
    )
    assert contract.path == path
