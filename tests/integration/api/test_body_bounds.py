"""Request bodies over real HTTP (uvicorn, raw sockets): a client that declares a body and
stalls or drips is answered 408 and let go, one over the limit 413, and a caller without
access is answered 401/403 without the server waiting for its body."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from processors.api import MAX_BODY_BYTES, create_api
from processors.settings import Settings

from .conftest import OTHER_ADMIN, TENANT, TENANT_ADMIN
from .served import serve

PUT_WEBHOOK = f"/v1/tenants/{TENANT}/connections/webhook"
SHORT_TIMEOUT = 0.5
"""The body read timeout of the app under test; a stalled client must get 408."""
CLIENT_WAIT = 30.0
"""How long a test waits for an answer before it fails (far above SHORT_TIMEOUT)."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


def _request_head(path: str, headers: dict[str, str], *, length: int) -> bytes:
    lines = [f"PUT {path} HTTP/1.1", "Host: api.test", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> Answer:
    """One response; ``closed`` says whether the server then closed the connection."""
    sock.settimeout(CLIENT_WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without an answer"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of its answer"
        rest += chunk
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    return Answer(int(status_line.split()[1]), headers, rest[:length], closed)


@pytest.fixture
def served_api(api_settings: Settings, redis_client: Redis) -> Iterator[tuple[str, int]]:
    """The API with a short body read timeout, on a real socket: (host, port)."""
    _ = redis_client  # removes the test's keys at the end
    with serve(create_api(api_settings, body_read_timeout_seconds=SHORT_TIMEOUT)) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        yield parts.hostname, parts.port


@pytest.fixture
def patient_api(api_settings: Settings, redis_client: Redis) -> Iterator[tuple[str, int]]:
    """The API with a body read timeout far longer than any test waits."""
    _ = redis_client
    with serve(create_api(api_settings, body_read_timeout_seconds=3600)) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        yield parts.hostname, parts.port


def _error(answer: Answer) -> dict[str, Any]:
    error = json.loads(answer.body)["error"]
    assert isinstance(error, dict)
    return error


def test_a_stalled_body_is_answered_408_and_the_connection_closed(
    served_api: tuple[str, int],
) -> None:
    with socket.create_connection(served_api, timeout=CLIENT_WAIT) as sock:
        sock.sendall(_request_head(PUT_WEBHOOK, TENANT_ADMIN, length=500) + b'{"enabled": ')
        answer = _read_answer(sock)
    assert answer.status == 408
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert _error(answer)["code"] == "request_timeout"
    assert answer.closed


def test_a_dripping_body_is_bounded_in_total_not_per_chunk(served_api: tuple[str, int]) -> None:
    """One byte every 50 ms never trips a per-read timeout; the total deadline still ends it."""
    length = 2000
    with socket.create_connection(served_api, timeout=CLIENT_WAIT) as sock:
        sock.sendall(_request_head(PUT_WEBHOOK, TENANT_ADMIN, length=length))
        answered = False
        for _ in range(length - 1):
            sock.sendall(b" ")
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                answered = True
                break
        assert answered, "the server read the whole drip without answering"
        answer = _read_answer(sock)
    assert answer.status == 408
    assert _error(answer)["code"] == "request_timeout"
    assert answer.closed


def test_a_declared_body_over_the_limit_is_413_without_reading_it(
    served_api: tuple[str, int],
) -> None:
    with socket.create_connection(served_api, timeout=CLIENT_WAIT) as sock:
        sock.sendall(_request_head(PUT_WEBHOOK, TENANT_ADMIN, length=MAX_BODY_BYTES + 1))
        answer = _read_answer(sock)
    assert answer.status == 413
    assert _error(answer)["code"] == "payload_too_large"
    assert answer.headers["connection"] == "close"
    assert answer.closed


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer not-a-jwt"}, 401), (OTHER_ADMIN, 403)],
)
def test_a_caller_without_access_is_answered_without_waiting_for_its_body(
    patient_api: tuple[str, int], headers: dict[str, str], status: int
) -> None:
    """The server would wait an hour for this body; the access check answers first, and the
    connection is closed since the rest of the body will never be read."""
    with socket.create_connection(patient_api, timeout=CLIENT_WAIT) as sock:
        sock.sendall(_request_head(PUT_WEBHOOK, headers, length=500) + b"{")
        answer = _read_answer(sock)
    assert answer.status == status
    assert _error(answer)["code"] in {"missing_token", "invalid_token", "forbidden"}
    assert answer.headers["connection"] == "close"
    assert answer.closed


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (OTHER_ADMIN, 403)])
def test_a_caller_without_access_learns_nothing_of_an_oversized_body(
    patient_api: tuple[str, int], headers: dict[str, str], status: int
) -> None:
    with socket.create_connection(patient_api, timeout=CLIENT_WAIT) as sock:
        sock.sendall(_request_head(PUT_WEBHOOK, headers, length=MAX_BODY_BYTES * 16))
        answer = _read_answer(sock)
    assert answer.status == status
