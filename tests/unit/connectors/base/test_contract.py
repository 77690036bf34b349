"""The kit's contract-record models: the Avro contracts' fields, parsed once per connector."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from connectors.base import PermanentError
from connectors.base.contract import (
    CompanyRecord,
    ContractRecord,
    ContractViolation,
    JobAdRecord,
    PersonRecord,
    SignalRecord,
    parse_record,
)
from connectors.hubspot.exports import PayloadError
from connectors.hubspot.payloads import export_for
from connectors.pipedrive import payloads as pipedrive
from tests.unit.connectors.hubspot import fakes as hubspot_fakes
from tests.unit.connectors.pipedrive import fakes as pipedrive_fakes

_SCHEMAS = pathlib.Path(__file__).parents[4] / "avro_schemas"
_ENVELOPE = {
    "event_type",
    "schema_version",
    "occurred_at",
    "idempotency_key",
    "tenant_id",
    "connection_id",
    "correlation_id",
    "event_id",
    "entity_version",
}


def _avro_fields(family: str) -> dict[str, Any]:
    schema = json.loads((_SCHEMAS / family / f"{family}.v1.avsc").read_text())
    return {field["name"]: field for field in schema["fields"]}


@pytest.mark.parametrize(
    ("family", "model"),
    [
        ("company", CompanyRecord),
        ("person", PersonRecord),
        ("signal", SignalRecord),
        ("job_ad_evidence", JobAdRecord),
    ],
)
def test_models_declare_exactly_the_contracts_entity_fields(
    family: str, model: type[ContractRecord]
) -> None:
    avro = _avro_fields(family)
    declared = set(model.model_fields) - {"occurred_at"}
    assert declared == set(avro) - _ENVELOPE
    for name in declared:
        nullable = isinstance(avro[name]["type"], list) and "null" in avro[name]["type"]
        assert model.model_fields[name].is_required() is ("default" not in avro[name]), name
        if nullable:
            assert model.model_fields[name].default is None, name


def test_every_connector_parses_into_the_kits_models() -> None:
    company = pipedrive.parse_company(pipedrive_fakes.company_record().payload)
    signal = pipedrive.parse_signal(pipedrive_fakes.signal_record().payload)
    assert type(company) is CompanyRecord
    assert type(signal) is SignalRecord


def test_a_violation_names_fields_never_values() -> None:
    with pytest.raises(ContractViolation) as caught:
        parse_record(SignalRecord, {"signal_id": "s", "contract_mode": "secret-mode"})
    assert "contract_mode" in caught.value.fields
    assert "secret-mode" not in str(caught.value)


def test_connectors_keep_their_own_errors_for_a_violation() -> None:
    bad = hubspot_fakes.company("co_1", employee_count="many")
    with pytest.raises(PayloadError, match="employee_count"):
        export_for(bad, queast_id_property="queast_id")
    negative = pipedrive_fakes.company_record(employee_count=-1)
    with pytest.raises(PermanentError, match=r"company contract \(employee_count\)"):
        pipedrive.parse_company(negative.payload)
