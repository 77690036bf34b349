"""What the API's routers read from ``app.state``: the Redis client and the settings.

:func:`processors.api.create_api` puts both there; a router's dependency builds its service or
repository from :func:`api_state` (one place checks that the app was built that way).
"""

from __future__ import annotations

from fastapi import Request
from redis.asyncio import Redis

from processors.settings import Settings

__all__ = ["api_state"]


def api_state(request: Request) -> tuple[Redis, Settings]:
    """The app's Redis client and settings; raises ``RuntimeError`` if the app has none."""
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return redis, settings
