"""What the API app keeps for its endpoints: the Redis client and the settings.

:func:`processors.api.create_api` puts them in ``app.state``; an endpoint's dependency reads
them with :func:`app_resources`, which fails loudly for an app built any other way.
"""

from __future__ import annotations

from fastapi import Request
from redis.asyncio import Redis

from processors.settings import Settings

__all__ = ["app_resources"]


def app_resources(request: Request) -> tuple[Redis, Settings]:
    """The app's Redis client and settings (``app.state``)."""
    redis = request.app.state.redis
    settings = request.app.state.settings
    if not isinstance(redis, Redis) or not isinstance(settings, Settings):
        msg = "the app has no redis/settings state; build it with processors.api.create_api"
        raise RuntimeError(msg)
    return redis, settings
