"""Partner connectors read the typed contract record the engine decoded, and name a record
failing its model with the same error their own parsing gives."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import BaseSink, ConnectorError, OutboundRecord, PermanentError
from connectors.base.contract import (
    CompanyRecord,
    ContractRecord,
    ContractViolation,
    PersonRecord,
    SignalRecord,
    parse_record,
)
from connectors.base.identity import EntityKind
from connectors.hubspot.exports import CompanyWrite, Deletion
from connectors.hubspot.payloads import export_for
from connectors.pipedrive import payloads as pipedrive_payloads
from tests.unit.connectors.fakes import count_contract_parses
from tests.unit.connectors.hubspot import fakes as hubspot_fakes
from tests.unit.connectors.hubspot.test_sink import MockHubSpot
from tests.unit.connectors.hubspot.test_sink import open_sink as open_hubspot
from tests.unit.connectors.pipedrive import fakes as pipedrive_fakes


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[type[ContractRecord]]:
    return count_contract_parses(monkeypatch)


def _violation(record: OutboundRecord, model: type[ContractRecord]) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        parse_record(model, record.payload)
    return caught.value


async def _refusals(sink: BaseSink[Any], bad: OutboundRecord) -> tuple[ConnectorError, Any]:
    """What the sink's own parsing gives ``bad``, and what it tells the engine for it."""
    outcome = await sink.deliver([bad])
    (failure,) = outcome.failed
    return failure.error, sink.contract_error(bad, _violation(bad, SignalRecord))


async def test_hubspot_names_a_record_failing_its_model_as_its_parsing_did() -> None:
    bad = hubspot_fakes.signal("", "co_1", contract_mode="wild")
    async with open_hubspot(MockHubSpot()) as sink:
        parsed, told = await _refusals(sink, bad)
    assert isinstance(parsed, PermanentError)
    assert type(told) is type(parsed)
    assert told.reason == parsed.reason
    assert "contract_mode" in told.reason
    assert "wild" not in told.reason
    assert told.partner == parsed.partner == "hubspot"


async def test_pipedrive_names_a_record_failing_its_model_as_its_parsing_did() -> None:
    bad = pipedrive_fakes.signal_record(contract_mode="wild", signal_id="")
    async with pipedrive_fakes.open_sink(pipedrive_fakes.MockPipedrive()) as sink:
        parsed, told = await _refusals(sink, bad)
    assert isinstance(parsed, PermanentError)
    assert type(told) is type(parsed)
    assert told.reason == parsed.reason
    assert "signal contract" in told.reason
    assert told.partner == parsed.partner == "pipedrive"


def test_partner_payload_mapping_reads_the_typed_record_not_the_dict(
    parses: list[type[ContractRecord]],
) -> None:
    typed = CompanyRecord(company_id="co_typed", name="Typed GmbH", domain="typed.example")
    hand_built = pipedrive_fakes.company_record("co_dict", name="Dict GmbH")
    record = hand_built.model_copy(update={"record": typed})
    hubspot = export_for(record, queast_id_property="queast_id")
    assert isinstance(hubspot, CompanyWrite)
    assert hubspot.queast_id == "co_typed"
    assert hubspot.domains == ("typed.example",)
    pipedrive = pipedrive_payloads.parse_company(record)
    assert pipedrive is typed
    assert parses == [], "no connector parses the payload dict again"


def test_a_deletion_reads_the_id_from_the_typed_record(
    parses: list[type[ContractRecord]],
) -> None:
    hand_built = pipedrive_fakes.deletion_record("person", "pe_dict")
    record = hand_built.model_copy(update={"record": PersonRecord(person_id="pe_typed")})
    assert export_for(record, queast_id_property="queast_id") == Deletion(
        kind=EntityKind.PERSON, queast_id="pe_typed"
    )
    assert pipedrive_payloads.classify(record) is pipedrive_payloads.RecordKind.PERSON_DELETION
    assert pipedrive_payloads.parse_person(record).person_id == "pe_typed"
    assert parses == []


class _KeepsRecords:
    """Wraps a fake resolver and keeps what ``decide`` was given to match."""

    def __init__(self) -> None:
        self.records: list[object] = []

    def wrap(self, identity: Any) -> Any:
        decide = identity.decide

        async def keeping(kind: EntityKind, queast_id: str, record: object, candidates: Any) -> Any:
            self.records.append(record)
            return await decide(kind, queast_id, record, candidates)

        identity.decide = keeping
        return identity


async def test_hubspot_identity_decisions_match_the_typed_record() -> None:
    kept = _KeepsRecords()
    typed = CompanyRecord(company_id="co_1", name="Typed", domain="typed.example")
    record = hubspot_fakes.company("co_1").model_copy(update={"record": typed})
    identity = kept.wrap(hubspot_fakes.FakeIdentity())
    async with open_hubspot(MockHubSpot(), identity=identity) as sink:
        outcome = await sink.deliver([record])
    assert outcome.failed == ()
    assert kept.records == [typed]


async def test_pipedrive_identity_decisions_match_the_typed_record() -> None:
    kept = _KeepsRecords()
    api = pipedrive_fakes.MockPipedrive()
    api.on(
        "GET", "/api/v2/organizations/search", pipedrive_fakes.ok(pipedrive_fakes.search_result())
    )
    api.on(
        "POST",
        "/api/v2/organizations",
        pipedrive_fakes.ok({"id": 77, "name": "Typed", "custom_fields": {}}),
    )
    typed = CompanyRecord(company_id="co_1", name="Typed", domain="typed.example")
    record = pipedrive_fakes.company_record().model_copy(update={"record": typed})
    identity = kept.wrap(pipedrive_fakes.FakeIdentity())
    async with pipedrive_fakes.open_sink(api, identity=identity) as sink:
        outcome = await sink.deliver([record])
    assert outcome.failed == ()
    assert kept.records == [typed]
