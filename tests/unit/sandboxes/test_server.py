"""The sandboxes' shared runner: a real uvicorn server on loopback, in a thread, started and
stopped the same way for every sandbox; and the child-process helpers of ``tests/support``."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.sandboxes._server import ThreadedServer, base_url, listen, uvicorn_server
from tests.sandboxes.hubspot import HubSpotSandbox
from tests.sandboxes.pipedrive import PipedriveSandbox
from tests.sandboxes.webhook_receiver import ReceiverServer
from tests.support.lifecycle import StartStop, end_process


async def _hello(request: Request) -> Response:
    return PlainTextResponse(f"hello from {threading.current_thread().name}")


class _Hello(ThreadedServer):
    name = "the hello server"

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.bound: list[str] = []

    def _new_server(self) -> uvicorn.Server:
        app = Starlette(routes=[Route("/", _hello)])
        return uvicorn_server(app, configure_logging=False, log_level="warning")

    def _bound(self, url: str) -> None:
        self.bound.append(url)


def _refuses(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


def _get_on(sock: socket.socket) -> bytes:
    """One ``GET /`` on an open connection; the response's status line, or ``b""`` if the
    server closed the connection instead of answering."""
    sock.sendall(b"GET / HTTP/1.1\r\nhost: sandbox\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        body += chunk
    return lines[0]


def test_an_idle_keep_alive_connection_is_kept_longer_than_clients_keep_theirs() -> None:
    # uvicorn's default closes an idle connection after 5 s; a client reusing it at that
    # moment loses its request (a read error), which a loaded machine makes likely
    with _Hello() as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            first = _get_on(sock)
            time.sleep(6)  # idle past uvicorn's default keep-alive
            second = _get_on(sock)
    assert first == b"HTTP/1.1 200 OK"
    assert second == b"HTTP/1.1 200 OK"


def test_serves_on_an_ephemeral_loopback_port_in_a_named_thread_and_stops() -> None:
    server = _Hello()
    with server:
        url = server.url
        answer = httpx.get(f"{url}/", timeout=5)
        assert answer.status_code == 200
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        assert url == f"http://127.0.0.1:{port}"
        assert answer.text == f"hello from hello-server:{port}"
        assert server.bound == [url]
    assert _refuses(url)
    with pytest.raises(RuntimeError, match="the hello server is not running"):
        _ = server.url
    server.stop()  # idempotent


def test_a_second_start_is_refused_and_a_stopped_server_starts_again() -> None:
    server = _Hello()
    with server, pytest.raises(RuntimeError, match="the hello server is already running"):
        server.start()
    with server:
        assert httpx.get(f"{server.url}/", timeout=5).status_code == 200


def test_a_port_in_use_fails_start_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _Hello(port=int(taken.getsockname()[1]))
        with pytest.raises(OSError):
            server.start()
        with pytest.raises(RuntimeError, match="not running"):
            _ = server.url


def test_every_sandbox_is_served_by_the_shared_runner() -> None:
    for sandbox in (HubSpotSandbox(), PipedriveSandbox(), ReceiverServer()):
        assert isinstance(sandbox, ThreadedServer)
        with sandbox:
            url = sandbox.url
            assert httpx.get(f"{url}/no-such-route", timeout=5).status_code == 404
        assert _refuses(url)


def test_the_pipedrive_sandbox_knows_its_url_before_the_first_request() -> None:
    with PipedriveSandbox() as sandbox:
        assert sandbox.state.api_domain == sandbox.url


def test_urls_and_sockets_for_ipv6_hosts_are_bracketed() -> None:
    assert base_url("127.0.0.1", 8) == "http://127.0.0.1:8"
    assert base_url("::1", 8) == "http://[::1]:8"
    with listen("127.0.0.1", 0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1"


class _Counting(StartStop):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> _Counting:
        self.calls.append("start")
        return self

    def stop(self) -> None:
        self.calls.append("stop")


def test_start_stop_is_stopped_even_when_the_block_fails() -> None:
    helper = _Counting()
    entered: list[_Counting] = []

    def fail() -> None:
        with helper as started:
            entered.append(started)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    assert entered == [helper]
    assert helper.calls == ["start", "stop"]


def test_end_process_terminates_a_running_child_and_ignores_an_ended_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    end_process(child, timeout=10)
    assert child.returncode is not None
    assert child.returncode != 0
    end_process(child)
    end_process(None)


def test_end_process_kills_a_child_that_ignores_sigterm() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    code += "print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    end_process(child, timeout=0.5)
    assert child.returncode == -9
    child.stdout.close()
