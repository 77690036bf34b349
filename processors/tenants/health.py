"""What the connections API says about a connection's deliveries: its ``state``.

One of (most severe first, when the connection's destinations differ):

- ``disabled``: the tenant set ``enabled: false`` (reason ``disabled by the tenant``, since
  the connection's last save), or a destination failed for ``breaker_disable_after_seconds``
  and was disabled by the delivery engine (its reason and time); records are parked until an
  admin saves the connection again;
- ``needs_reauth``: the partner refused the credentials (401) or the sink could not be set up
  with them; records are parked until the connection is saved with new ones;
- ``parked``: the endpoint is gone (410) or the connection's configuration cannot be used;
  records are parked until the connection is saved;
- ``failing``: every recent attempt failed transiently and the breaker is open
  (:mod:`processors.deliveries.breaker`); records wait, one probe at a time tests the
  destination, and the first success makes it ``enabled`` again;
- ``enabled``: none of the above (``state_reason`` and ``state_since`` are null).

A connection delivers to one or two destinations (its own connector and, in delivery mode
``webhook`` or ``both``, the tenant's webhook as a copy, keyed ``{connection_id}:webhook``);
each has its own health and breaker in Redis (:mod:`processors.connection_health`, written by
:mod:`processors.deliveries.state`), and the API shows the most severe,
its reason prefixed with ``webhook copy:`` when it is the copy's. Health written before the
connection's last save is over (the save was the fix), as the delivery engine reads it.

Saving or deleting a connection forgets the health and breaker of every destination it could
have (:meth:`ConnectionHealthView.forget`): a save is the admin's "try again".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from connectors.registry import webhook_copy_carrier
from processors.connection_health import Breaker, ConnectionHealth, ConnectionState, HealthStore
from processors.tenants.models import ConnectionRecord

__all__ = [
    "ConnectionHealthView",
    "ConnectionStatus",
    "DestinationHealth",
    "ShownState",
    "connection_status",
]

ShownState = Literal["enabled", "parked", "needs_reauth", "failing", "disabled"]

_SEVERITY: Final[dict[str, int]] = {
    "disabled": 4,
    "needs_reauth": 3,
    "parked": 2,
    "failing": 1,
    "enabled": 0,
}
_SHOWN: Final[dict[ConnectionHealth, ShownState]] = {
    ConnectionHealth.DISABLED: "disabled",
    ConnectionHealth.NEEDS_REAUTH: "needs_reauth",
    ConnectionHealth.GONE: "parked",
}


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """A connection's ``state``, ``state_reason`` and ``state_since`` as the API shows them."""

    state: ShownState = "enabled"
    reason: str | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class DestinationHealth:
    """What Redis holds for one destination of a connection."""

    label: str
    """``""`` for the connection's own connector, else the copy's connector (``webhook``)."""
    health: ConnectionState | None
    breaker: Breaker


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _destination_status(record: ConnectionRecord, found: DestinationHealth) -> ConnectionStatus:
    saved = record.updated_at.timestamp()
    prefix = f"{found.label} copy: " if found.label else ""
    health = found.health
    if health is not None and health.since >= saved:
        return ConnectionStatus(_SHOWN[health.health], prefix + health.reason, _at(health.since))
    breaker = found.breaker
    if breaker.failing and not breaker.older_than(saved):
        reason = f"every attempt failed since {_at(breaker.first_failure_at).isoformat()}"
        if breaker.last_error:
            reason += f"; last error: {breaker.last_error}"
        return ConnectionStatus("failing", prefix + reason, _at(breaker.failing_since))
    return ConnectionStatus()


def connection_status(
    record: ConnectionRecord, destinations: Sequence[DestinationHealth]
) -> ConnectionStatus:
    """The state the API shows for ``record`` (see the module doc); pure."""
    if not record.enabled:
        return ConnectionStatus("disabled", "disabled by the tenant", record.updated_at)
    statuses = [_destination_status(record, found) for found in destinations]
    return max(statuses, key=lambda s: _SEVERITY[s.state], default=ConnectionStatus())


class ConnectionHealthView:
    """Reads and forgets the delivery health of connections (Redis, see
    :mod:`processors.connection_health`)."""

    def __init__(self, store: HealthStore) -> None:
        self._store = store

    async def status(self, record: ConnectionRecord) -> ConnectionStatus:
        found = []
        for label, key in _destinations(record):
            health, breaker = await self._store.read(key)
            found.append(DestinationHealth(label, health, breaker))
        return connection_status(record, found)

    async def forget(self, record: ConnectionRecord) -> None:
        """Drop the health and breaker of every destination the connection could have."""
        await self._store.forget([key for _label, key in _destinations(record)])


def _destinations(record: ConnectionRecord) -> list[tuple[str, str]]:
    """Every destination key the connection could have, with its label: its own connector's
    (the connection id) and, for a partner connection, its webhook copy's. Both are read
    whatever the delivery mode: a save (a mode change included) forgets both."""
    own = [("", record.connection_id)]
    carrier = webhook_copy_carrier().name
    if record.connector.value == carrier:
        return own
    return [*own, (carrier, f"{record.connection_id}:{carrier}")]
