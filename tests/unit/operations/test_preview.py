"""The preview's own parts: synthetic answers, redaction of recorded requests, the clock."""

from __future__ import annotations

import itertools
import json

import httpx

from processors.operations.preview import (
    PLACEHOLDER_TOKEN,
    SYNTHETIC_ID_BASE,
    NoNetworkRecorder,
    NoWaitClock,
    SecretScrubber,
    partner_request,
    synthetic_answer,
)
from processors.secrets import REDACTED


def ids() -> itertools.count[int]:
    return itertools.count(SYNTHETIC_ID_BASE)


def answer(request: httpx.Request) -> object:
    numbers = ids()
    response = synthetic_answer(request, lambda: next(numbers))
    assert response.status_code == 200
    return response.json()


def test_searches_find_nothing() -> None:
    hubspot = httpx.Request("POST", "https://h.test/crm/v3/objects/companies/search", json={})
    pipedrive = httpx.Request("GET", "https://p.test/api/v2/persons/search?term=a")

    assert answer(hubspot) == {"total": 0, "results": [], "success": True, "data": {"items": []}}
    assert answer(pipedrive) == answer(hubspot)


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
                "id": str(SYNTHETIC_ID_BASE),
                "objectWriteTraceId": "d1",
                "properties": {"name": "Acme"},
                "new": True,
            }
        ],
    }


def test_pipedrive_calls_answer_their_envelope() -> None:
    created = httpx.Request("POST", "https://p.test/api/v2/organizations", json={"name": "Acme"})
    updated = httpx.Request("PATCH", "https://p.test/api/v2/persons/42", json={"org_id": 7})
    listing = httpx.Request("GET", "https://p.test/api/v2/organizations?limit=500")

    assert answer(created) == {"success": True, "data": {"name": "Acme", "id": SYNTHETIC_ID_BASE}}
    assert answer(updated) == {"success": True, "data": {"org_id": 7, "id": 42}}
    assert answer(listing) == {
        "success": True,
        "data": [],
        "additional_data": {"next_cursor": None},
    }


def test_sensitive_headers_fields_and_known_secrets_are_redacted() -> None:
    stored_secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMy"
    request = httpx.Request(
        "POST",
        "https://p.test/hook?api_token=t0k&page=2",
        headers={
            "Authorization": "Bearer abc",
            "x-api-token": "t0k",
            "webhook-signature": "v1,abc",
            "webhook-id": "qik_1",
            "x-echo": f"prefix {stored_secret}",
        },
        json={"name": "Acme", "auth": {"client_secret": "cs", "note": stored_secret}},
    )

    shown = partner_request(request, SecretScrubber([stored_secret]))

    assert shown.url == f"https://p.test/hook?api_token={REDACTED}&page=2"
    assert shown.headers["authorization"] == REDACTED
    assert shown.headers["x-api-token"] == REDACTED
    assert shown.headers["webhook-signature"] == REDACTED
    assert shown.headers["webhook-id"] == "qik_1"
    assert shown.headers["x-echo"] == f"prefix {REDACTED}"
    assert shown.body == {"name": "Acme", "auth": {"client_secret": REDACTED, "note": REDACTED}}
    assert shown.purpose == "write"
    assert stored_secret not in shown.model_dump_json()


def test_a_form_body_is_shown_as_fields_and_a_token_request_is_named() -> None:
    request = httpx.Request(
        "POST",
        "https://p.test/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "rt", "client_id": "c"},
    )

    shown = partner_request(request, SecretScrubber([PLACEHOLDER_TOKEN]))

    assert shown.purpose == "token"
    assert shown.body == {
        "grant_type": "refresh_token",
        "refresh_token": REDACTED,
        "client_id": "c",
    }


def test_lookups_and_reads_carry_a_note() -> None:
    scrub = SecretScrubber([])
    search = partner_request(httpx.Request("POST", "https://h.test/x/search", json={}), scrub)
    listing = partner_request(httpx.Request("GET", "https://p.test/api/v2/persons"), scrub)
    read = partner_request(httpx.Request("GET", "https://p.test/api/v2/persons/42"), scrub)

    assert (search.purpose, listing.purpose, read.purpose) == ("lookup", "lookup", "read")
    assert search.note is not None
    assert search.note.startswith("would search")
    assert listing.note is not None
    assert read.note is not None


async def test_the_recorder_keeps_every_request_and_sends_none() -> None:
    recorder = NoNetworkRecorder()
    async with recorder.client_factory(timeout_seconds=1.0, headers={"accept": "x"}) as client:
        first = await client.post("http://127.0.0.1:9/api/v2/organizations", json={"name": "A"})
        second = await client.post("http://127.0.0.1:9/api/v2/organizations", json={"name": "B"})

    assert [r.url.path for r in recorder.requests] == ["/api/v2/organizations"] * 2
    assert recorder.requests[0].headers["accept"] == "x"
    assert recorder.requests[0].headers["user-agent"].startswith("queast-integrations/")
    assert json.loads(recorder.requests[1].content) == {"name": "B"}
    assert first.json()["data"]["id"] == SYNTHETIC_ID_BASE
    assert second.json()["data"]["id"] == SYNTHETIC_ID_BASE + 1


async def test_the_clock_never_waits() -> None:
    clock = NoWaitClock()
    before = clock.monotonic()

    await clock.sleep(3600)

    assert clock.monotonic() - before >= 3600
