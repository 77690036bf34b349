"""The contract keeps one form through delivery: the engine decodes each export once into the
kit's typed record, connectors read that record, and a record failing its model is
dead-lettered with its reason instead of being sent."""

from __future__ import annotations

import pytest

from connectors.base import OutboundRecord, PermanentError
from connectors.base.contract import CompanyRecord, ContractRecord
from connectors.hubspot.exports import CompanyWrite
from connectors.hubspot.payloads import export_for
from connectors.pipedrive import payloads as pipedrive_payloads
from connectors.webhook.sink import WebhookSink
from tests.unit.connectors.fakes import count_contract_parses
from tests.unit.deliveries.test_engine import Harness, _headers, _item, _ScriptedSink


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[type[ContractRecord]]:
    return count_contract_parses(monkeypatch)


async def test_the_sink_receives_the_typed_record_and_the_json_payload() -> None:
    h = Harness(lambda r: None)
    await h.run([_item(1, company_id="co_1")])
    (sent,) = h.sinks[0].sent
    assert isinstance(sent.record, CompanyRecord)
    assert sent.record.company_id == "co_1"
    assert sent.payload["company_id"] == "co_1"
    assert h.statuses() == ["delivered"]


async def test_each_export_is_parsed_once_however_many_connectors_read_it(
    parses: list[type[ContractRecord]],
) -> None:
    seen: list[tuple[str, str]] = []

    def read_like_the_partners(record: OutboundRecord) -> None:
        hubspot = export_for(record, queast_id_property="queast_id")
        assert isinstance(hubspot, CompanyWrite)
        pipedrive = pipedrive_payloads.parse_company(record)
        seen.append((hubspot.queast_id, pipedrive.company_id))

    h = Harness(read_like_the_partners)
    await h.run([_item(n, company_id=f"co_{n}") for n in (1, 2, 3)])
    assert seen == [("co_1", "co_1"), ("co_2", "co_2"), ("co_3", "co_3")]
    assert parses == [CompanyRecord] * 3
    assert h.statuses() == ["delivered"] * 3


async def test_a_record_failing_its_model_is_dead_lettered_with_its_reason() -> None:
    h = Harness(lambda r: None)
    await h.run([_item(1, company_id=""), _item(2, company_id="co_2")])
    assert [r.delivery_id for r in h.sinks[0].sent] == ["d-2"], "the bad record is not sent"
    (dead,) = h.on("dlq.webhook")
    headers = _headers(dead)
    assert headers["qi.delivery_id"] == "d-1"
    assert headers["qi.error.class"] == PermanentError.__name__
    assert "company_id" in headers["qi.error.reason"]
    assert "payload does not match its contract" in headers["qi.error.reason"]
    assert headers["qi.attempt"] == "1"
    assert dead.value, "the contract is kept"
    assert sorted(h.statuses()) == ["dead_lettered", "delivered"]


async def test_a_connector_that_sends_the_json_as_it_is_gets_the_record_anyway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ScriptedSink, "contract_error", WebhookSink.contract_error)
    h = Harness(lambda r: None)
    await h.run([_item(1, company_id="")])
    (sent,) = h.sinks[0].sent
    assert sent.record is None
    assert sent.payload["company_id"] == ""
    assert h.statuses() == ["delivered"]
    assert h.on("dlq.webhook") == []
