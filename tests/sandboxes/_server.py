"""Serving a sandbox's ASGI app for real: uvicorn on loopback, in a thread or the foreground.

Every sandbox (HubSpot, Pipedrive, the webhook receiver) is an in-memory Starlette app plus
this: :class:`ThreadedServer` binds a socket (port ``0``: ephemeral) in ``start()``, serves
the app with uvicorn on its own event loop in a daemon thread, returns once uvicorn has
started serving that socket (so the URL answers), and ``stop()`` shuts it down gracefully,
forcing the exit if the grace runs out. A sandbox subclasses it and supplies only its app
(``_new_server``), its name, and optionally what it must know of its own URL before the
first request (``_bound``). :func:`serve_until_interrupted` is the foreground form used by
the sandboxes' ``python -m`` entry points for the local demo.

uvicorn is tuned for many short concurrent requests from one test: no access log, no
lifespan, no proxy headers or server header, ``httptools`` when installed, a two-second
graceful shutdown, and idle keep-alive connections kept for two minutes. uvicorn's own
default closes them after five seconds, shorter than the clients in this project keep them
(the connectors' pool: 30 s): on a loaded machine a client then reuses a connection at the
moment the server closes it, and the request is lost with a read error. A server that keeps
idle connections longer than every client means the client always retires them first.
Stopping is not slowed: shutdown closes idle connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import threading
import time
from abc import abstractmethod
from typing import Any, ClassVar, Final, Literal, Self

import uvicorn
from starlette.types import ASGIApp

from tests.support.lifecycle import StartStop

__all__ = [
    "ThreadedServer",
    "base_url",
    "listen",
    "serve_until_interrupted",
    "uvicorn_config",
    "uvicorn_server",
]

_HTTP_IMPL: Final[Literal["h11", "httptools"]] = (
    "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
)
_SHUTDOWN_GRACE_SECONDS: Final[int] = 2
_KEEP_ALIVE_SECONDS: Final[int] = 120


def uvicorn_config(app: ASGIApp, *, configure_logging: bool, log_level: str) -> uvicorn.Config:
    """The sandboxes' uvicorn settings; ``configure_logging=False`` leaves logging alone."""
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}
    return uvicorn.Config(
        app,
        loop="asyncio",
        http=_HTTP_IMPL,
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
        timeout_keep_alive=_KEEP_ALIVE_SECONDS,
        **extra,
    )


def uvicorn_server(app: ASGIApp, *, configure_logging: bool, log_level: str) -> uvicorn.Server:
    """A uvicorn server for ``app`` with :func:`uvicorn_config`."""
    return uvicorn.Server(
        uvicorn_config(app, configure_logging=configure_logging, log_level=log_level)
    )


def listen(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``0``: an ephemeral port; IPv6 hosts too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_until_interrupted(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve ``sock`` in the foreground until Ctrl-C (uvicorn re-raises it after shutdown)."""
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


class ThreadedServer(StartStop):
    """A sandbox app served by uvicorn in a daemon thread; ``with`` starts and stops it.

    Subclasses set :attr:`name` (``"the HubSpot sandbox"``, used in errors and the thread
    name) and implement :meth:`_new_server`; :attr:`backlog` is the listen backlog.
    """

    name: ClassVar[str]
    backlog: ClassVar[int] = 2048

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @abstractmethod
    def _new_server(self) -> uvicorn.Server:
        """A fresh uvicorn server for the app (``uvicorn_server(app, ...)`` or a subclass)."""

    def _bound(self, url: str) -> None:
        """Called with the URL once the port is bound, before the first request is served."""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._url is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._url

    def start(self, *, timeout: float = 10.0) -> Self:
        """Bind, serve in a background thread, and return once uvicorn has started."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        sock = listen(self._host, self._port, backlog=self.backlog)
        server = self._new_server()
        self._server, self._error = server, None
        port: int = sock.getsockname()[1]
        self._bound(base_url(self._host, port))
        thread = threading.Thread(
            target=self._serve,
            args=(server, sock),
            name=f"{self.name.removeprefix('the ').lower().replace(' ', '-')}:{port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start") from self._error
            time.sleep(0.005)
        self._url = base_url(self._host, port)
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        """Shut down and join the thread (forcing the exit after ``timeout``); idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._url = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start(); uvicorn may raise SystemExit
            self._error = exc
        finally:
            sock.close()
