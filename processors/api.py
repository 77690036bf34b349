"""The HTTP API application factory.

Serves ``/healthz`` (Redis reachable), ``/metrics`` (Prometheus text format), OpenAPI docs at
``/docs``, and the domains' routers:

- :mod:`processors.tenants.endpoints`: the allowlist (``/admin/v1``) and tenants' connections
  (``/v1/tenants/{tenant_id}/connections``);
- :mod:`processors.deliveries.endpoints`: delivery records (``/v1/tenants/{tenant_id}/deliveries``).
- :mod:`processors.operations.preview_api`: what a connection would send (``…/preview``).
- :mod:`processors.deliveries.endpoints`: delivery records (``/v1/tenants/{tenant_id}/deliveries``);
- :mod:`processors.operations.replay_api`: replays (``/v1/tenants/{tenant_id}/replays``).
- :mod:`processors.inbound.intake_api`: partner webhooks (``/webhooks/{connector}/{tenant_id}``,
  no bearer token; bodies bounded by ``QI_INBOUND_MAX_BODY_BYTES``, produced to Kafka by the
  app's :class:`~processors.inbound.intake.InboundProducer`, started and flushed with the app).
- :mod:`processors.operations.replay_api`: replays (``/v1/tenants/{tenant_id}/replays``);
- :mod:`processors.console`: the HTML console (``/console/``), over the same services.

Every ``/v1`` and ``/admin`` endpoint needs a bearer JWT (:mod:`processors.auth`); the OpenAPI
document declares the ``bearerAuth`` scheme. Errors are rendered by :mod:`processors.errors` as
``{"error": {"code", "message"}}``, and every operation lists in OpenAPI the statuses it answers.

Order of answers under ``/v1`` and ``/admin``: the caller is authenticated and authorised
(401/403) before the body is read at all (:mod:`processors.auth.routes`), so nothing about a
body, its size, its pace, its media type or its syntax, is answered to a caller without access.
Then the body is bounded by :class:`BoundedBodyMiddleware`: at most :data:`MAX_BODY_BYTES`
(413, on the declared length and on the bytes read) and at most ``body_read_timeout_seconds``
(:data:`BODY_READ_TIMEOUT_SECONDS` by default) from the first read to its last byte (408): a
client that declares a body and stalls does not hold a connection (uvicorn's
``timeout_keep_alive`` covers idle connections between requests, not a body that never
comes). Those answers, and any other sent while part of the body is unread, close the
connection. Then 415 for a body not declared as JSON, 400 ``malformed_json`` for one that is
not UTF-8 JSON, 422 for one that does not validate.

The body read timeout is a parameter of :func:`create_api`, not an environment setting: the
default suits every client of a 64 KiB configuration API, and tests shorten it.

A Redis that does not answer (refused, timed out after the client's own retries, see
:mod:`processors.redis_client`) is 503 ``store_unavailable`` with ``Retry-After: 5``, in the same
JSON shape as every other error, never a plain-text 500; the error class is logged, never the
command's arguments.

``app.state`` holds ``settings``, ``redis`` (one client per process, closed with the app),
``releaser`` (held records, on one Kafka producer made on first use, flushed at shutdown) and
``token_verifier``; the domains' dependencies read them from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors.appstate import ApiProducer
from processors.auth import TokenVerifier
from processors.console import router as console_router
from processors.deliveries.endpoints import router as deliveries_router
from processors.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    ServiceUnavailable,
    error_body,
    install_error_handlers,
)
from processors.inbound.intake import WEBHOOKS_PREFIX, InboundProducer
from processors.inbound.intake_api import router as inbound_router
from processors.inbound.reviews_api import router as inbound_reviews_router
from processors.operations.backfill_api import router as backfill_router
from processors.operations.deadletters_api import router as dead_letters_router
from processors.operations.preview_api import router as preview_router
from processors.operations.release import HeldReleaser
from processors.operations.replay_api import router as replay_router
from processors.redis_client import redis_client
from processors.settings import Settings
from processors.tenants.endpoints import admin_router, tenant_router
from processors.tenants.matches import router as identity_router

__all__ = ["BODY_READ_TIMEOUT_SECONDS", "MAX_BODY_BYTES", "BoundedBodyMiddleware", "create_api"]

_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest request body the configuration API accepts."""

BODY_READ_TIMEOUT_SECONDS: Final = 10.0
"""Longest a request body may take to arrive, from the first read to its last byte."""

_LIMITED_PREFIXES: Final = ("/v1/", "/admin/")


class _BoundedBody:
    """The ``receive`` of one request, bounded: raises :class:`PayloadTooLarge` past
    ``max_bytes`` (declared or read), :class:`RequestTimeout` once the body has taken longer
    than ``timeout_seconds`` since the first read, :class:`BadRequest` for an unreadable
    ``Content-Length``. Nothing is read until the app asks for the body."""

    def __init__(
        self, receive: Receive, scope: Scope, *, max_bytes: int, timeout_seconds: float
    ) -> None:
        self._receive = receive
        self._path = str(scope.get("path", ""))
        self._max = max_bytes
        self._timeout = timeout_seconds
        self._declared, has_body = self._declared_length(scope)
        self._finished = not has_body
        self._received = 0
        self._deadline: float | None = None
        self._refusal: ServiceError | None = None

    @property
    def unfinished(self) -> bool:
        """Whether part of a declared body was never read (the connection cannot be reused)."""
        return not self._finished

    async def receive(self) -> Message:
        if self._finished:
            return await self._receive()
        if self._refusal is None:
            try:
                return await self._bounded_receive()
            except ServiceError as exc:
                self._refusal = exc
        raise self._refusal  # the same answer to every later read

    async def _bounded_receive(self) -> Message:
        if self._declared == -1:
            raise BadRequest("invalid Content-Length", code="bad_content_length")
        if self._declared is not None and self._declared > self._max:
            raise PayloadTooLarge(f"request body is over {self._max} bytes")
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            _log.info(
                "api.request.body_timeout",
                extra={"path": self._path, "received_bytes": self._received},
            )
            raise RequestTimeout() from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._max:
                raise PayloadTooLarge(f"request body is over {self._max} bytes")
            if not message.get("more_body", False):
                self._finished = True
        return message

    @staticmethod
    def _declared_length(scope: Scope) -> tuple[int | None, bool]:
        """The declared length (-1 if unreadable, None if not declared) and whether the
        request has a body at all (a positive length, or a transfer encoding)."""
        length: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return -1, True
                if length < 0:
                    return -1, True
            elif name == b"transfer-encoding":
                chunked = True
        return length, chunked or bool(length)


class BoundedBodyMiddleware:
    """Bounds the request bodies of the paths under ``prefixes`` in size and in time.

    Reading stays lazy: the app reads the body when it needs it (the routes of
    :mod:`processors.auth.routes` do so after the access check), and the bounds are enforced on
    those reads (see :class:`_BoundedBody`), so they end the request with their
    :class:`ServiceError`. A response that starts while part of a declared body is unread
    carries ``Connection: close``: the server will not read the rest, so the connection cannot
    carry another request (a client that declares a body and stalls is released at the latest
    ``timeout_seconds`` after the app started reading).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS,
        prefixes: tuple[str, ...] = _LIMITED_PREFIXES,
    ) -> None:
        self._app = app
        self._max = max_bytes
        self._timeout = timeout_seconds
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self._prefixes):
            await self._app(scope, receive, send)
            return
        body = _BoundedBody(receive, scope, max_bytes=self._max, timeout_seconds=self._timeout)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and body.unfinished:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, body.receive, send_closing)


_REDIS_RETRY_AFTER_SECONDS: Final = 5


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    _log.warning(
        "api.redis.unavailable",
        extra={"path": request.url.path, "method": request.method, "error": type(exc).__name__},
    )
    error = ServiceUnavailable(
        "the configuration store is unavailable, try again shortly", code="store_unavailable"
    )
    return JSONResponse(
        error_body(error),
        status_code=error.status_code,
        headers={"Retry-After": str(_REDIS_RETRY_AFTER_SECONDS)},
    )


class Health(BaseModel):
    """The body of ``/healthz``: ``ok``, or ``unavailable`` with the Redis error's class."""

    status: Literal["ok", "unavailable"]
    redis: str | None = None


def create_api(
    settings: Settings, *, body_read_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS
) -> FastAPI:
    """The FastAPI app; one Redis client per process, opened and closed with the app."""
    redis = redis_client(settings.redis)
    kafka = ApiProducer(settings.kafka)  # releases held records (processors.operations.release)
    inbound = InboundProducer.for_settings(settings.kafka, settings.intake)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.secrets.is_development_key:
            _log.warning("secrets.development_key_in_use")
        inbound.start()
        yield
        await asyncio.to_thread(kafka.close)
        await asyncio.to_thread(inbound.close)
        await redis.aclose()

    app = FastAPI(
        title="Queast Integration Layer",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.redis = redis
    app.state.token_verifier = TokenVerifier.from_settings(settings.auth)
    app.state.releaser = HeldReleaser.for_api(redis, settings, kafka.get)
    app.state.inbound_producer = inbound
    install_error_handlers(app)
    app.add_middleware(
        BoundedBodyMiddleware,
        max_bytes=MAX_BODY_BYTES,
        timeout_seconds=body_read_timeout_seconds,
    )
    app.add_middleware(
        BoundedBodyMiddleware,
        max_bytes=settings.intake.inbound_max_body_bytes,
        timeout_seconds=body_read_timeout_seconds,
        prefixes=(WEBHOOKS_PREFIX,),
    )
    app.add_exception_handler(RedisError, _redis_unavailable)

    @app.get(
        "/healthz",
        tags=["operations"],
        response_model=Health,
        responses={503: {"model": Health, "description": "Redis does not answer"}},
    )
    async def healthz() -> JSONResponse:
        try:
            await redis.ping()
        except RedisError as exc:
            return JSONResponse(
                {"status": "unavailable", "redis": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(admin_router)
    app.include_router(tenant_router())
    app.include_router(deliveries_router)
    app.include_router(identity_router)
    app.include_router(preview_router)
    app.include_router(dead_letters_router)
    app.include_router(replay_router)
    app.include_router(inbound_reviews_router)
    app.include_router(inbound_router)
    app.include_router(console_router)  # HTML pages at /console/ (processors.console)
    app.include_router(backfill_router)
    return app
