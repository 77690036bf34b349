"""HubSpot's synthetic answers for the service's preview (``connectors.hubspot.preview``)."""

from __future__ import annotations

import httpx

from connectors.hubspot.preview import preview_answer
from connectors.registry import get_connector
from tests.unit.connectors.fakes import FIRST_PREVIEW_ID, preview_json

FIRST_ID = FIRST_PREVIEW_ID


def answer(request: httpx.Request) -> object:
    return preview_json(preview_answer, request)


def test_the_connector_declares_it() -> None:
    assert get_connector("hubspot").preview_answer is preview_answer


def test_searches_find_nothing() -> None:
    search = httpx.Request("POST", "https://h.test/crm/v3/objects/companies/search", json={})

    assert answer(search) == {"total": 0, "results": []}


def test_a_batch_gets_one_new_object_per_traced_input() -> None:
    body = {
        "inputs": [
            {"id": "co_1", "objectWriteTraceId": "d1", "properties": {"name": "Acme"}},
            {"from": {"id": "1"}, "to": {"id": "2"}},
        ]
    }
    request = httpx.Request(
        "POST", "https://h.test/crm/v3/objects/companies/batch/upsert", json=body
    )

    assert answer(request) == {
        "status": "COMPLETE",
        "results": [
            {
                "id": str(FIRST_ID),
                "objectWriteTraceId": "d1",
                "properties": {"name": "Acme"},
                "new": True,
            }
        ],
    }


def test_archives_and_associations_complete_without_results() -> None:
    archive = httpx.Request(
        "POST",
        "https://h.test/crm/v3/objects/companies/batch/archive",
        json={"inputs": [{"id": "42"}]},
    )

    assert answer(archive) == {"status": "COMPLETE", "results": []}


def test_other_calls_answer_the_object_named_or_a_new_one() -> None:
    read = httpx.Request("GET", "https://h.test/crm/v3/objects/companies/42?properties=name")
    created = httpx.Request(
        "POST", "https://h.test/crm/v3/objects/companies", json={"properties": {"name": "A"}}
    )
    listing = httpx.Request("GET", "https://h.test/crm/v3/objects/companies?limit=100")

    assert answer(read) == {"id": "42", "properties": {}}
    assert answer(created) == {"id": str(FIRST_ID), "properties": {"name": "A"}}
    assert answer(listing) == {"results": []}
