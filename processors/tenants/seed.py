"""``queast-integrations connections seed FILE``: load the allowlist and connections from JSON.

File format::

    {"allowlist": ["t_acme"],
     "connections": [{"tenant_id": "t_acme", "connector": "webhook", "enabled": true,
                      "delivery_mode": "webhook", "event_types": {"job_ad.published": false},
                      "settings": {"webhook": {"url": "http://127.0.0.1:8900/hook",
                                               "secret": "whsec_..."}}}]}

Each connection replaces the tenant's connection for that connector (one per connector per
tenant). Secret fields in ``settings`` are sealed before they are stored. The whole file is
validated before anything is written: a bad file changes nothing. A seed, even of an empty
file, writes the configuration epoch (see :mod:`processors.tenants.repository`): it states
what the configuration is, so routing may go on.

``queast-integrations connections init`` (:func:`initialise_configuration`) writes the epoch
alone, for a deployment that starts with no tenants at all, or to tell a worker holding its
partitions after a configuration loss that the (restored or deliberately empty) configuration
is the one to route by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from processors.redis_client import redis_client
from processors.secrets import SecretBox
from processors.settings import Settings
from processors.tenants.models import ConnectionRecord
from processors.tenants.repository import ConnectionRepository
from processors.tenants.secret_fields import seal_settings

__all__ = [
    "SeedError",
    "SeedFile",
    "SeedReport",
    "initialise_configuration",
    "put_sealed",
    "seed_from_file",
]

_MAX_SEED_BYTES = 4 * 1024 * 1024


class SeedError(ValueError):
    """The seed file is missing, too large, not JSON, or not valid."""


class SeedFile(BaseModel):
    """The seed document."""

    model_config = ConfigDict(extra="forbid")

    allowlist: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] = Field(
        default_factory=list
    )
    connections: list[ConnectionRecord] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SeedReport:
    allowlisted: int
    connections: int


def load_seed_file(path: Path) -> SeedFile:
    """Read and validate; raises :class:`SeedError` with field locations, never values."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise SeedError(msg) from exc
    if len(raw) > _MAX_SEED_BYTES:
        msg = f"{path} is {len(raw)} bytes, limit {_MAX_SEED_BYTES}"
        raise SeedError(msg)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        msg = f"{path} is not JSON"
        raise SeedError(msg) from exc
    try:
        seed = SeedFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)[:10]
        )
        msg = f"{path} is not a valid seed file: {problems}"
        raise SeedError(msg) from exc
    seen: set[tuple[str, str]] = set()
    for connection in seed.connections:
        pair = (connection.tenant_id, connection.connector.value)
        if pair in seen:
            msg = f"{path}: two connections for tenant {pair[0]} and connector {pair[1]}"
            raise SeedError(msg)
        seen.add(pair)
    return seed


async def put_sealed(
    repository: ConnectionRepository, connection: ConnectionRecord, *, box: SecretBox
) -> None:
    """Store ``connection`` with its secret fields sealed, bound to its tenant and id."""
    sealed = seal_settings(
        connection.settings,
        box=box,
        tenant_id=connection.tenant_id,
        connection_id=connection.connection_id,
    )
    await repository.put(connection.model_copy(update={"settings": sealed}))


async def seed_from_file(path: Path, *, settings: Settings) -> SeedReport:
    """Validate the whole file, then write the allowlist and the connections."""
    seed = load_seed_file(path)
    box = settings.secrets.secret_box()
    redis = redis_client(settings.redis)
    try:
        repository = ConnectionRepository(redis, key_prefix=settings.redis.key_prefix)
        for tenant_id in seed.allowlist:
            await repository.allow(tenant_id)
        for connection in seed.connections:
            await put_sealed(repository, connection, box=box)
        await repository.initialise()
    finally:
        await redis.aclose()
    return SeedReport(allowlisted=len(seed.allowlist), connections=len(seed.connections))


async def initialise_configuration(*, settings: Settings) -> str:
    """Write the configuration epoch if it is missing; returns the epoch now stored."""
    redis = redis_client(settings.redis)
    try:
        return await ConnectionRepository(redis, key_prefix=settings.redis.key_prefix).initialise()
    finally:
        await redis.aclose()
