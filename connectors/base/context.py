"""What a sink receives from the service instead of reaching into it.

The idea is Kafka Connect's ``SinkTaskContext``: the service builds one
:class:`SinkContext` per connection (validated config, a way to read decrypted
credentials, the network policy, a clock, an HTTP client factory, a logger and, for OAuth
connections, the store of renewed grants) and hands it to the sink's constructor. Nothing
here knows about Kafka, Redis or ``processors``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import SecretStr

from connectors.base.config import ConnectionConfig
from connectors.base.errors import AuthenticationError
from connectors.base.http import HttpClientFactory, http_client_factory
from connectors.base.identity import IdentityResolver
from connectors.base.oauth import GrantStore

__all__ = [
    "Clock",
    "ConfigT",
    "CredentialsAccessor",
    "SinkContext",
    "StaticCredentials",
    "SystemClock",
]

ConfigT = TypeVar("ConfigT", bound=ConnectionConfig)


class Clock(Protocol):
    """Time as a sink sees it; tests inject a fake one."""

    def time(self) -> float:
        """Wall-clock Unix seconds (signature timestamps, ``Retry-After`` dates)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (durations, token buckets)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock advances instead)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class CredentialsAccessor(Protocol):
    """Decrypted credentials of one connection, read when a request needs them.

    ``get`` is called per request (not cached by the sink), so a refreshed OAuth token is
    picked up by the next attempt. It raises ``AuthenticationError`` when the credential is
    missing or cannot be decrypted.
    """

    async def get(self, name: str) -> SecretStr: ...


class StaticCredentials:
    """Credentials held in memory: for connectors whose secret does not rotate, and tests."""

    def __init__(self, values: Mapping[str, SecretStr] | None = None) -> None:
        self._values = dict(values or {})

    async def get(self, name: str) -> SecretStr:
        try:
            return self._values[name]
        except KeyError:
            raise AuthenticationError(f"credential {name!r} not configured") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class SinkContext(Generic[ConfigT]):
    """Everything one connection's sink may use.

    ``allow_private_networks`` lets a sink reach loopback and private addresses (local
    development and tests only; off in production). ``http_client_factory`` is the one
    way to build an HTTP client; tests pass one that uses ``httpx.MockTransport``.
    """

    tenant_id: str
    connection_id: str
    connector: str
    config: ConfigT
    credentials: CredentialsAccessor = field(default_factory=StaticCredentials)
    allow_private_networks: bool = False
    clock: Clock = field(default_factory=SystemClock)
    http_client_factory: HttpClientFactory = http_client_factory
    identity: IdentityResolver | None = None
    """The tenant's mapping store and match policy; partner CRM connectors need it."""
    grant_store: GrantStore | None = None
    """Where an OAuth connection's renewed grants are kept between sinks (the service's)."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("connectors"))

    def log_fields(self) -> dict[str, str]:
        """The connection's coordinates, for structured logging."""
        return {
            "tenant_id": self.tenant_id,
            "connection_id": self.connection_id,
            "connector": self.connector,
        }
