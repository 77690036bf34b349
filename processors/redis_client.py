"""The one place Redis clients are built: every process and agent calls :func:`redis_client`.

Every client gets the timeouts and reconnect policy of :class:`~processors.settings.RedisSettings`:

- ``connect_timeout_seconds`` bounds a TCP connect, ``socket_timeout_seconds`` every reply, so
  a Redis that stops answering surfaces as :class:`redis.exceptions.TimeoutError` instead of a
  call that hangs (no command used by this service blocks on the server side);
- a pooled connection idle for ``health_check_interval_seconds`` is pinged before it is
  reused, so a Redis restarted behind the pool's back is noticed before a command is sent;
- a command that meets a connection error or a timeout is retried ``retries`` times on a fresh
  connection, with exponential backoff and jitter capped at ``retry_backoff_cap_seconds``. Past
  that the error reaches the caller, whose own loop (routing batch, delivery lane, API 503)
  decides what waits. Retrying a write is safe here: every write of this service is idempotent
  (sets, hash fields, ``SET NX``, Lua scripts keyed by their own inputs).
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processors.settings import RedisSettings

__all__ = ["RELEASE_IF_OWNER", "redis_client", "reply_text"]


def redis_client(settings: RedisSettings) -> Redis:
    """A client for ``settings.url`` with the configured timeouts and retries."""
    return Redis.from_url(
        settings.url,
        socket_connect_timeout=settings.connect_timeout_seconds,
        socket_timeout=settings.socket_timeout_seconds,
        socket_keepalive=True,
        health_check_interval=settings.health_check_interval_seconds,
        retry=Retry(
            ExponentialWithJitterBackoff(cap=settings.retry_backoff_cap_seconds, base=0.05),
            settings.retries,
        ),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


RELEASE_IF_OWNER: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""A lease's release by its owner: delete ``KEYS[1]`` only while it still holds ``ARGV[1]``
(the owner's token), so a lease that expired and was taken by another owner stays theirs."""


def reply_text(value: bytes | str) -> str:
    """A Redis reply as text (the clients here do not decode replies)."""
    return value.decode() if isinstance(value, bytes) else str(value)
