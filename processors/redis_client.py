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

from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from processors.settings import RedisSettings

__all__ = [
    "RELEASE_IF_OWNER",
    "ScriptPipeline",
    "redis_client",
    "reply_text",
    "run_script_pipeline",
]


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


class ScriptPipeline:
    """A pipeline (``transaction=False``) whose scripts are sent as ``EVALSHA``; filled by the
    ``build`` callback of :func:`run_script_pipeline`."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        """The pipeline itself, for plain commands."""
        self.scripts: dict[str, AsyncScript] = {}

    def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[EncodableT]) -> None:
        """Queue one run of ``script`` (a script registered on the client)."""
        self.scripts[script.sha] = script
        self.pipe.evalsha(script.sha, len(keys), *keys, *args)


async def run_script_pipeline(redis: Redis, build: Callable[[ScriptPipeline], object]) -> list[Any]:
    """Run what ``build`` queues, in order and in one round trip; the replies.

    redis-py's own way (calling a registered script with ``client=pipe``) asks ``SCRIPT
    EXISTS`` before every such pipeline, a second round trip each time. Here the scripts go as
    ``EVALSHA`` alone. A Redis that lost them (restarted or flushed) answers ``NOSCRIPT``: the
    scripts are loaded, and the pipeline is built and run once more, whole. So everything a
    caller queues must be safe to run twice, as every write of this service is (see the module
    docstring).
    """
    queued = ScriptPipeline(redis.pipeline(transaction=False))
    build(queued)
    try:
        return list(await queued.pipe.execute())
    except NoScriptError:
        for script in queued.scripts.values():
            await redis.script_load(script.script)
    again = ScriptPipeline(redis.pipeline(transaction=False))
    build(again)
    return list(await again.pipe.execute())
