from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from processors.logs import (
    REDACTED,
    THIRD_PARTY_LOGGERS,
    JsonFormatter,
    configure_logging,
    redact_text,
)

TOKEN = "SECRETtok3n"


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("contact ada.lovelace+crm@example.co.uk now", "contact", "ada.lovelace"),
        ("search term=jane%40acme.se", "search", "acme.se"),
        (
            f"HTTP Request: POST https://hooks.example.com/q/t1?token={TOKEN}&x=1 200",
            "https://hooks.example.com/q/t1?" + REDACTED,
            TOKEN,
        ),
        (
            "GET https://api.pipedrive.com/v1/persons/search?term=ada%40example.com",
            "https://api.pipedrive.com/v1/persons/search?",
            "example.com",
        ),
        (f'"GET /v1/tenants/t_1/deliveries?cursor={TOKEN} HTTP/1.1" 200', "deliveries?", TOKEN),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer " + REDACTED, TOKEN),
        (f"authorization=Basic {TOKEN}", "Basic", TOKEN),
        (f"x-api-token: {TOKEN}", "x-api-token: " + REDACTED, TOKEN),
        (f'{{"refresh_token": "{TOKEN}"}}', "refresh_token", TOKEN),
        (f"signed with whsec_{TOKEN}", "whsec_" + REDACTED, TOKEN),
        (f"private app pat-na1-{TOKEN}-1234", "pat-" + REDACTED, TOKEN),
        (f"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.{TOKEN}", "jwt", TOKEN),
    ],
)
def test_redact_text_removes_personal_data_and_secrets(text: str, kept: str, gone: str) -> None:
    redacted = redact_text(text)
    assert kept in redacted
    assert gone not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "delivery.attempt.failed",
        "routing.event.invalid",
        "endpoint hooks.example.com:8443 answered 503",
        "what now? nothing to hide",
        "t_42/conn_t_42",
    ],
)
def test_redact_text_leaves_ordinary_text_alone(text: str) -> None:
    assert redact_text(text) == text


def _format(message: str, *args: object, **fields: object) -> dict[str, object]:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, message, args, None)
    for key, value in fields.items():
        setattr(record, key, value)
    document = json.loads(JsonFormatter().format(record))
    assert isinstance(document, dict)
    return document


def test_the_formatter_redacts_the_message_text() -> None:
    url = f"https://hooks.example.com/hook?token={TOKEN}"
    document = _format('HTTP Request: %s %s "%s"', "POST", url, "HTTP/1.1 200 OK")
    assert document["event"] == (
        f'HTTP Request: POST https://hooks.example.com/hook?{REDACTED} "HTTP/1.1 200 OK"'
    )


def test_the_formatter_redacts_text_inside_innocent_looking_fields() -> None:
    document = _format(
        "delivery.attempt.failed",
        reason="person ada@example.com refused",
        endpoint=f"hooks.example.com/hook?token={TOKEN}",
        context={"detail": ["see bob@example.org", 3]},
        tenant_id="t_1",
    )
    line = json.dumps(document)
    assert "example.com" not in line.replace("hooks.example.com", "")
    assert "bob@example.org" not in line
    assert TOKEN not in line
    assert document["tenant_id"] == "t_1"
    assert document["context"] == {"detail": [f"see {REDACTED}", 3]}


@pytest.fixture
def captured_logging() -> Iterator[io.StringIO]:
    """Route configure_logging's handler into a buffer; restore the loggers afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    buffer = io.StringIO()
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


def _configure(buffer: io.StringIO, level: str, third_party_level: str) -> None:
    handler = configure_logging(level, third_party_level=third_party_level)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


async def test_httpx_request_lines_are_not_logged_by_default(
    captured_logging: io.StringIO,
) -> None:
    _configure(captured_logging, "info", "warning")
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(f"https://api.pipedrive.com/v1/persons/search?term=ada%40x.se&t={TOKEN}")
    logging.getLogger("processors.test").info("own.event", extra={"tenant_id": "t_1"})
    lines = [json.loads(line) for line in captured_logging.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["own.event"]
    assert logging.getLogger("uvicorn.access").getEffectiveLevel() == logging.WARNING


async def test_the_third_party_level_is_configurable_and_still_redacted(
    captured_logging: io.StringIO,
) -> None:
    _configure(captured_logging, "info", "info")
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(f"https://api.pipedrive.com/v1/persons/search?term=ada%40x.se&t={TOKEN}")
    text = captured_logging.getvalue()
    assert "HTTP Request: GET https://api.pipedrive.com/v1/persons/search?" in text
    assert TOKEN not in text
    assert "ada" not in text
