"""The preview's own parts: the recorder and its answers, redaction of requests, the clock.

The partners' synthetic answers are tested with their connectors
(``tests/unit/connectors/*/test_preview.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from connectors.registry import ConnectorSpec, UnknownConnectorError, extended, get_connector
from connectors.webhook import WebhookConnectionConfig, WebhookSink
from processors.operations.preview import (
    PLACEHOLDER_TOKEN,
    SYNTHETIC_ID_BASE,
    NoNetworkRecorder,
    NoWaitClock,
    SecretScrubber,
    default_answer,
    partner_request,
)
from processors.secrets import REDACTED


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


def numbered(request: httpx.Request, new_id: Callable[[], int]) -> httpx.Response:
    """A connector's answer for these tests: the path it was asked and a new id."""
    return httpx.Response(201, json={"path": request.url.path, "id": new_id()})


def _acme(answer: Callable[[httpx.Request, Callable[[], int]], httpx.Response]) -> ConnectorSpec:
    class AcmeSink(WebhookSink):
        pass

    AcmeSink.name = "acme"
    return ConnectorSpec(
        name="acme",
        sink_class=AcmeSink,
        config_class=WebhookConnectionConfig,
        max_batch_size=1,
        default_rate_limit=WebhookSink.default_rate_limit,
        preview_answer=answer,
    )


async def test_the_recorder_keeps_every_request_and_sends_none() -> None:
    recorder = NoNetworkRecorder(numbered)
    async with recorder.client_factory(timeout_seconds=1.0, headers={"accept": "x"}) as client:
        first = await client.post("http://127.0.0.1:9/api/v2/organizations", json={"name": "A"})
        second = await client.post("http://127.0.0.1:9/api/v2/organizations", json={"name": "B"})

    assert [r.url.path for r in recorder.requests] == ["/api/v2/organizations"] * 2
    assert recorder.requests[0].headers["accept"] == "x"
    assert recorder.requests[0].headers["user-agent"].startswith("queast-integrations/")
    assert json.loads(recorder.requests[1].content) == {"name": "B"}
    assert first.status_code == 201
    assert first.json() == {"path": "/api/v2/organizations", "id": SYNTHETIC_ID_BASE}
    assert second.json()["id"] == SYNTHETIC_ID_BASE + 1


async def test_without_an_answer_of_its_own_a_request_gets_200_and_an_empty_object() -> None:
    recorder = NoNetworkRecorder()
    async with recorder.client_factory() as client:
        answered = await client.post("https://hooks.test/queast/42", json={"inputs": []})

    assert (answered.status_code, answered.json()) == (200, {})
    assert len(recorder.requests) == 1
    direct = default_answer(httpx.Request("GET", "https://x.test/a"), lambda: 1)
    assert (direct.status_code, direct.json()) == (200, {})


async def test_the_recorder_answers_with_the_destination_connector_s_own_answer() -> None:
    with extended(_acme(numbered)):
        recorder = NoNetworkRecorder.for_connector("acme")
        async with recorder.client_factory() as client:
            acme = await client.put("https://acme.test/things/7", json={})
    webhook = NoNetworkRecorder.for_connector("webhook")
    async with webhook.client_factory() as client:
        hook = await client.post("https://hooks.test/queast", json={"inputs": []})

    assert acme.json() == {"path": "/things/7", "id": SYNTHETIC_ID_BASE}
    assert get_connector("webhook").preview_answer is None
    assert (hook.status_code, hook.json()) == (200, {})


async def test_every_built_in_partner_connector_gives_its_own_answer() -> None:
    search = httpx.Request("POST", "https://p.test/objects/search", json={})
    for name in ("hubspot", "pipedrive"):
        recorder = NoNetworkRecorder.for_connector(name)
        async with recorder.client_factory() as client:
            answered = await client.send(search)
        spec_answer = get_connector(name).preview_answer
        assert spec_answer is not None
        assert answered.json() == spec_answer(search, lambda: 0).json()
        assert answered.json() != {}


def test_an_unknown_connector_has_no_recorder() -> None:
    with pytest.raises(UnknownConnectorError, match="acme"):
        NoNetworkRecorder.for_connector("acme")


async def test_the_clock_never_waits() -> None:
    clock = NoWaitClock()
    before = clock.monotonic()

    await clock.sleep(3600)

    assert clock.monotonic() - before >= 3600
