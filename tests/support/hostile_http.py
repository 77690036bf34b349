"""Webhook endpoints that misbehave below the level a well-behaved HTTP server allows.

``HostileServer`` is a raw asyncio TCP server on loopback, run in a daemon thread. Each
``POST /hooks/{endpoint}`` is read in full and answered as the endpoint's :class:`Hostility`
says, byte for byte:

- ``retry_after``: ``429 Too Many Requests`` with ``Retry-After`` set to the given text verbatim
  (``1e308``, ``1e9``, ``inf``, a date ...), which a framework would normalise or refuse;
- ``drip``: a ``200 OK`` whose status line, headers and body are written one byte every
  ``drip_interval`` seconds, so the full answer takes minutes.

Every request is recorded (endpoint, ``webhook-id``, arrival time) whatever happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Self

from tests.support.lifecycle import StartStop

__all__ = ["HostileRequest", "HostileServer", "Hostility"]

_MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Hostility:
    """How one endpoint answers: a 429 with ``retry_after`` text, or a dripped 200."""

    retry_after: str | None = None
    drip_interval: float = 1.0
    drip_padding: int = 600
    """Extra body bytes of a dripped answer (at one byte per interval, how long it lasts)."""


@dataclass(frozen=True, slots=True)
class HostileRequest:
    endpoint: str
    webhook_id: str | None
    received_at: float


class HostileServer(StartStop):
    """``with HostileServer({"t_x": Hostility(retry_after="1e308")}) as srv: srv.url``."""

    def __init__(self, endpoints: dict[str, Hostility]) -> None:
        self._endpoints = dict(endpoints)
        self._lock = threading.Lock()
        self._requests: list[HostileRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def endpoint_url(self, endpoint: str) -> str:
        return f"{self.url}/hooks/{endpoint}"

    def requests(self, endpoint: str | None = None) -> list[HostileRequest]:
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            )
            self._server = server
            self._port = int(server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown(server))
            loop.close()

        self._thread = threading.Thread(target=serve, name="hostile-http", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            msg = "the hostile server did not start"
            raise RuntimeError(msg)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    async def _shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the request path --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > _MAX_HEAD_BYTES:
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                path = request_line.split(" ")[1] if " " in request_line else ""
                endpoint = path.removeprefix("/hooks/")
                with self._lock:
                    self._requests.append(
                        HostileRequest(endpoint, headers.get("webhook-id"), time.time())
                    )
                hostility = self._endpoints.get(endpoint, Hostility())
                await self._answer(writer, hostility)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        except asyncio.CancelledError:  # the server is shutting down mid-answer
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, hostility: Hostility) -> None:
        if hostility.retry_after is not None:
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\n"
                b"Retry-After: " + hostility.retry_after.encode("latin-1") + b"\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()
            return
        body = b"ok" + b" " * hostility.drip_padding
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for index in range(len(answer)):
            writer.write(answer[index : index + 1])
            await writer.drain()
            await asyncio.sleep(hostility.drip_interval)
