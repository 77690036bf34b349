"""``keys rotate``: re-wrap every stored connection secret under the active key.

Walks every tenant's connections hash (``SCAN {prefix}tenant:*:connections``), and for each
secret field of each connection's ``settings`` (the fields
:func:`~processors.tenants.secret_fields.iter_secret_paths` names) calls
``box.rewrap(token, tenant_id=, connection_id=, purpose=<dotted path>)``, the same binding
:func:`~processors.tenants.secret_fields.seal_settings` used. A connection with at least one
changed field is written back; nothing else about it changes (not even ``updated_at``).

- A secret already under the newest key is counted as current and left as it is.
- A secret that does not open (tampered, moved, or under a key no longer in the ring) is
  reported by tenant, connector and field path, and left untouched; the other fields of the
  same connection are still re-wrapped. Its text is never logged or reported.
- A secret stored in clear (written around the API) is sealed under the newest key.
- A connection record that cannot be parsed is reported as a failure with an empty path.

Writes are compare-and-set per connection (a Lua script replaces the stored JSON only if it is
still the JSON that was read), so a connection saved through the API during the rotation is
never overwritten with stale settings; such a connection is read again and retried.

Each connection's renewed OAuth grant (``oauth:{connection_id}``, see
:mod:`processors.oauthgrants`) is re-sealed too, right after the connection, with the
store's own compare-and-set (a renewal saved meanwhile is read again; the grant's expiry is
kept). A grant that does not open is reported with the path ``oauth_grant`` and left as it is
(the sink ignores it and starts again from the connection's own refresh token). Grants are
found through the connections, since opening one needs its connection's tenant. A grant whose
connection is gone (deleted before deleting a connection deleted its grant too) cannot be
re-sealed (nor one whose connection record does not parse): it is counted in
``grants_without_connection`` and logged, never touched; once the old key is retired it opens
for nobody, so an operator can delete it.

It lives at the top of ``processors`` because it spans three packages: the connection records
(:mod:`processors.tenants`), the OAuth grants (:mod:`processors.oauthgrants`) and the key
ring (:mod:`processors.secrets`); none of them imports it, so the tenants package need not
depend on the deliveries package (which depends on it).

The run is idempotent: run it again and everything is current. The active key is the last of
``QI_SECRETS_KEYS`` unless ``QI_SECRETS_ACTIVE_KEY_ID`` names another; the whole rotation
(stage, activate, ``keys rotate``, retire) is in :mod:`processors.secrets.keyring`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from processors.oauthgrants import GRANT_PURPOSE, OAuthTokenStore
from processors.secrets import SecretBox, SecretsError
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import SEALED_PREFIX, iter_secret_paths, map_secret_fields

__all__ = ["RotationFailure", "RotationReport", "rotate_keys"]

_log = logging.getLogger(__name__)

_SCAN_COUNT: Final = 200
_MAX_WRITE_ATTEMPTS: Final = 5

# Replace a hash field only if it still holds the value that was read.
_COMPARE_AND_SET: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RotationFailure:
    """A secret (or a whole record, ``path == ""``) that could not be re-wrapped."""

    tenant_id: str
    connector: str
    connection_id: str
    path: str
    reason: str


@dataclass(slots=True)
class RotationReport:
    """What a rotation did. ``ok`` is true when nothing failed."""

    newest_key_id: str
    connections_scanned: int = 0
    connections_updated: int = 0
    secrets_rewrapped: int = 0
    secrets_already_current: int = 0
    secrets_sealed_from_plaintext: int = 0
    grants_rewrapped: int = 0
    grants_already_current: int = 0
    grants_without_connection: int = 0
    failures: list[RotationFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class _Outcome:
    settings: dict[str, Any]
    rewrapped: int = 0
    current: int = 0
    sealed: int = 0
    failures: list[RotationFailure] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.rewrapped or self.sealed)


def _rewrap_connection(record: ConnectionRecord, box: SecretBox) -> _Outcome:
    outcome = _Outcome(settings=record.settings)
    replacements: dict[str, str] = {}
    binding = {"tenant_id": record.tenant_id, "connection_id": record.connection_id}
    for path, value in iter_secret_paths(record.settings):
        try:
            if not value.startswith(SEALED_PREFIX):
                replacements[path] = box.encrypt(value, purpose=path, **binding)
                outcome.sealed += 1
                continue
            rewrapped = box.rewrap(value, purpose=path, **binding)
        except SecretsError as exc:
            outcome.failures.append(
                RotationFailure(
                    tenant_id=record.tenant_id,
                    connector=record.connector.value,
                    connection_id=record.connection_id,
                    path=path,
                    reason=str(exc),  # fixed texts and key ids only (processors.secrets.errors)
                )
            )
            continue
        if rewrapped == value:
            outcome.current += 1
        else:
            replacements[path] = rewrapped
            outcome.rewrapped += 1
    if replacements:
        outcome.settings = map_secret_fields(record.settings, replacements.get)
    return outcome


def _unread(key: str, prefix: str, connector: str, reason: str) -> RotationFailure:
    """A connection that was not rotated as a whole (no connection id or field to name)."""
    tenant_id = key.removeprefix(f"{prefix}tenant:").removesuffix(":connections")
    return RotationFailure(
        tenant_id=tenant_id, connector=connector, connection_id="", path="", reason=reason
    )


async def rotate_keys(redis: Redis, *, key_prefix: str, box: SecretBox) -> RotationReport:
    """Re-wrap every stored connection secret and OAuth grant under ``box``'s active key.

    See the module doc.

    Per-secret problems are reported, never raised. Raises only what Redis raises
    (``redis.exceptions.RedisError``) when it cannot be reached; a rerun picks up from there.
    """
    rotation = _Rotation(
        redis,
        key_prefix,
        box,
        report=RotationReport(newest_key_id=box.key_ring.active_key_id),
        compare_and_set=redis.register_script(_COMPARE_AND_SET),
        grants=OAuthTokenStore(redis, box=box, key_prefix=key_prefix),
    )
    report = rotation.report
    seen: set[str] = set()
    async for raw_key in redis.scan_iter(
        match=f"{key_prefix}tenant:*:connections", count=_SCAN_COUNT
    ):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        if key in seen:  # SCAN may return a key more than once
            continue
        seen.add(key)
        fields: list[Any] = await redis.hkeys(key)
        for raw_field in sorted(fields):
            connector = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            await rotation.connection(key, connector)
    report.grants_without_connection = await _count_orphan_grants(
        redis, key_prefix, rotation.visited
    )
    _log.info(
        "keys.rotate.finished",
        extra={
            "newest_key_id": report.newest_key_id,
            "connections_scanned": report.connections_scanned,
            "connections_updated": report.connections_updated,
            # field names avoid "secret": the JSON log formatter would redact the counts
            "rewrapped": report.secrets_rewrapped,
            "already_current": report.secrets_already_current,
            "sealed_from_plaintext": report.secrets_sealed_from_plaintext,
            "grants_rewrapped": report.grants_rewrapped,
            "grants_already_current": report.grants_already_current,
            "grants_without_connection": report.grants_without_connection,
            "failures": len(report.failures),
        },
    )
    return report


@dataclass(slots=True)
class _Rotation:
    """One run of :func:`rotate_keys`: what it writes with, what it counts, what it visited."""

    redis: Redis
    prefix: str
    box: SecretBox
    report: RotationReport
    compare_and_set: AsyncScript
    grants: OAuthTokenStore
    visited: set[str] = field(default_factory=set)
    """The connection ids rotated (their grants are not orphans)."""

    async def connection(self, key: str, connector: str) -> None:
        """Rotate the connection ``connector`` of the connections hash ``key``, then its grant."""
        report = self.report
        report.connections_scanned += 1
        for _attempt in range(_MAX_WRITE_ATTEMPTS):
            raw = await self.redis.hget(key, connector)
            if raw is None:  # deleted meanwhile
                return
            try:
                record = ConnectionRecord.model_validate_json(raw)
            except ValidationError:
                invalid = "stored connection record is not valid"
                _fail(report, _unread(key, self.prefix, connector, invalid))
                return
            outcome = _rewrap_connection(record, self.box)
            if outcome.changed:
                updated = record.model_copy(update={"settings": outcome.settings}).model_dump_json()
                written = await self.compare_and_set(keys=[key], args=[connector, raw, updated])
                if not written:
                    continue  # changed under us: read again
                report.connections_updated += 1
            report.secrets_rewrapped += outcome.rewrapped
            report.secrets_already_current += outcome.current
            report.secrets_sealed_from_plaintext += outcome.sealed
            for failure in outcome.failures:
                _fail(report, failure)
            self.visited.add(record.connection_id)
            await _rotate_grant(record, self.grants, report)
            return
        changing = "connection kept changing during the rotation; run it again"
        _fail(report, _unread(key, self.prefix, connector, changing))


async def _count_orphan_grants(redis: Redis, prefix: str, connection_ids: set[str]) -> int:
    """Stored grants whose connection was not among ``connection_ids`` (see the module doc)."""
    grant_prefix = f"{prefix}oauth:"
    orphans: set[str] = set()
    async for raw_key in redis.scan_iter(match=f"{grant_prefix}*", count=_SCAN_COUNT):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        connection_id = key.removeprefix(grant_prefix)
        if connection_id not in connection_ids:
            orphans.add(connection_id)
    for connection_id in sorted(orphans):
        _log.warning("keys.rotate.grant_without_connection", extra={"connection_id": connection_id})
    return len(orphans)


async def _rotate_grant(
    record: ConnectionRecord, grants: OAuthTokenStore, report: RotationReport
) -> None:
    try:
        done = await grants.rewrap(tenant_id=record.tenant_id, connection_id=record.connection_id)
    except SecretsError as exc:
        _fail(
            report,
            RotationFailure(
                tenant_id=record.tenant_id,
                connector=record.connector.value,
                connection_id=record.connection_id,
                path=GRANT_PURPOSE,
                reason=str(exc),  # fixed texts and key ids only
            ),
        )
        return
    if done == "rewrapped":
        report.grants_rewrapped += 1
    elif done == "current":
        report.grants_already_current += 1


def _fail(report: RotationReport, failure: RotationFailure) -> None:
    report.failures.append(failure)
    _log.warning(
        "keys.rotate.secret_failed",
        extra={
            "tenant_id": failure.tenant_id,
            "connector": failure.connector,
            "connection_id": failure.connection_id,
            "field_path": failure.path,
            "reason": failure.reason,
        },
    )
