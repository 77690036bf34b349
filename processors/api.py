"""The HTTP API application factory.

Serves ``/healthz`` (Redis reachable) and ``/metrics`` (Prometheus text format). The tenant and
admin configuration endpoints, inbound webhooks and delivery views are mounted here as their
domains are added.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from processors.settings import Settings

__all__ = ["create_api"]


def create_api(settings: Settings) -> FastAPI:
    """The FastAPI app; one Redis client per process, opened and closed with the app."""
    redis = Redis.from_url(settings.redis.url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    app = FastAPI(title="Queast Integration Layer", version="0.1.0", lifespan=lifespan)

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

    return app
