"""Pipedrive's synthetic answers for the service's preview (``connectors.pipedrive.preview``)."""

from __future__ import annotations

import httpx

from connectors.pipedrive.preview import preview_answer
from connectors.registry import get_connector
from tests.unit.connectors.fakes import FIRST_PREVIEW_ID, preview_json

FIRST_ID = FIRST_PREVIEW_ID


def answer(request: httpx.Request) -> object:
    return preview_json(preview_answer, request)


def test_the_connector_declares_it() -> None:
    assert get_connector("pipedrive").preview_answer is preview_answer


def test_searches_find_nothing() -> None:
    search = httpx.Request("GET", "https://p.test/api/v2/persons/search?term=a")

    assert answer(search) == {"success": True, "data": {"items": []}}


def test_pipedrive_calls_answer_their_envelope() -> None:
    created = httpx.Request("POST", "https://p.test/api/v2/organizations", json={"name": "Acme"})
    updated = httpx.Request("PATCH", "https://p.test/api/v2/persons/42", json={"org_id": 7})
    read = httpx.Request("GET", "https://p.test/api/v2/organizations/42")
    note = httpx.Request("POST", "https://p.test/v1/notes", json={"content": "<p>x</p>"})
    listing = httpx.Request("GET", "https://p.test/api/v2/organizations?limit=500")

    assert answer(created) == {"success": True, "data": {"name": "Acme", "id": FIRST_ID}}
    assert answer(updated) == {"success": True, "data": {"org_id": 7, "id": 42}}
    assert answer(read) == {"success": True, "data": {"id": 42}}
    assert answer(note) == {"success": True, "data": {"content": "<p>x</p>", "id": FIRST_ID}}
    assert answer(listing) == {
        "success": True,
        "data": [],
        "additional_data": {"next_cursor": None},
    }
