"""The HTTP API application factory.

Serves ``/healthz`` (Redis reachable), ``/metrics`` (Prometheus text format), OpenAPI docs at
``/docs``, and the domains' routers:

- :mod:`processors.tenants.endpoints`: the allowlist (``/admin/v1``) and tenants' connections
  (``/v1/tenants/{tenant_id}/connections``);
- :mod:`processors.deliveries.endpoints`: delivery records (``/v1/tenants/{tenant_id}/deliveries``).

Every ``/v1`` and ``/admin`` endpoint needs a bearer JWT (:mod:`processors.auth`); the OpenAPI
document declares the ``bearerAuth`` scheme. Errors are rendered by :mod:`processors.errors` as
``{"error": {"code", "message"}}``. Request bodies under ``/v1`` and ``/admin`` are limited to
:data:`MAX_BODY_BYTES` (413 beyond it, checked on the declared length and on the bytes read).

A Redis that does not answer (refused, timed out after the client's own retries, see
:mod:`processors.redis_client`) is 503 ``store_unavailable`` with ``Retry-After: 5``, in the same
JSON shape as every other error, never a plain-text 500; the error class is logged, never the
command's arguments.

``app.state`` holds ``settings``, ``redis`` (one client per process, closed with the app) and
``token_verifier``; the domains' dependencies read them from there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processors.auth import TokenVerifier
from processors.deliveries.endpoints import router as deliveries_router
from processors.errors import (
    BadRequest,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    error_body,
    install_error_handlers,
)
from processors.identity.endpoints import router as identity_router
from processors.redis_client import redis_client
from processors.settings import Settings
from processors.tenants.endpoints import admin_router, tenant_router

__all__ = ["MAX_BODY_BYTES", "BodySizeLimitMiddleware", "create_api"]

_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest request body the configuration API accepts."""

_LIMITED_PREFIXES: Final = ("/v1/", "/admin/")


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 before any endpoint reads them.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is read
    (at most ``max_bytes`` of it) and handed on whole. Applies to paths under ``prefixes``.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, prefixes: tuple[str, ...] = _LIMITED_PREFIXES
    ) -> None:
        self._app = app
        self._max = max_bytes
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self._prefixes):
            await self._app(scope, receive, send)
            return
        declared = self._declared_length(scope)
        if declared == -1:
            await self._refuse(
                BadRequest("invalid Content-Length", code="bad_content_length"),
                scope,
                receive,
                send,
            )
            return
        if declared is not None and declared > self._max:
            await self._refuse(
                PayloadTooLarge(f"request body is over {self._max} bytes"), scope, receive, send
            )
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await self._refuse(
                    PayloadTooLarge(f"request body is over {self._max} bytes"), scope, receive, send
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    @staticmethod
    def _declared_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return -1
                return length if length >= 0 else -1
        return None

    @staticmethod
    async def _refuse(error: ServiceError, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(error_body(error), status_code=error.status_code)
        await response(scope, receive, send)


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


def create_api(settings: Settings) -> FastAPI:
    """The FastAPI app; one Redis client per process, opened and closed with the app."""
    redis = redis_client(settings.redis)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.secrets.is_development_key:
            _log.warning("secrets.development_key_in_use")
        yield
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
    install_error_handlers(app)
    app.add_exception_handler(RedisError, _redis_unavailable)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)

    @app.get("/healthz", tags=["operations"])
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
    app.include_router(tenant_router)
    app.include_router(deliveries_router)
    app.include_router(identity_router)
    return app
