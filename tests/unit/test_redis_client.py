"""Every Redis client is built with the configured timeouts, health checks and retries."""

from __future__ import annotations

from processors.redis_client import redis_client
from processors.settings import RedisSettings


async def test_the_client_carries_the_configured_timeouts_and_retries() -> None:
    settings = RedisSettings(
        url="redis://127.0.0.1:1/0",
        connect_timeout_seconds=1.5,
        socket_timeout_seconds=4.0,
        health_check_interval_seconds=7,
        retries=2,
    )
    client = redis_client(settings)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_connect_timeout"] == 1.5
        assert kwargs["socket_timeout"] == 4.0
        assert kwargs["health_check_interval"] == 7
        assert kwargs["retry"].get_retries() == 2
    finally:
        await client.aclose()


def test_defaults_bound_every_wait() -> None:
    settings = RedisSettings()
    assert 0 < settings.connect_timeout_seconds <= 5
    assert 0 < settings.socket_timeout_seconds <= 5
    assert settings.health_check_interval_seconds > 0
