"""Stable idempotency keys and delivery ids.

The idempotency key identifies one state of one entity at one destination:
``(tenant, connector, connection, destination, event type, entity id, entity version)``. Replays
and re-consumption after a crash compute the same key, so a destination never applies the same
change twice; a new entity version or another destination gets another key.

Format: ``qik_`` + 32 hex characters (128 bits of SHA-256). It contains no ``.``, so it can stand
as a Standard Webhooks ``webhook-id``.
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["delivery_id_for", "idempotency_key"]

_DELIVERY_NAMESPACE = uuid.UUID("5b0b7d7e-4a55-4c3f-9f6b-6f1d8f3b2a10")


def _field(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return len(encoded).to_bytes(4, "big") + encoded


def idempotency_key(
    *,
    tenant_id: str,
    connector: str,
    connection_id: str,
    event_type: str,
    entity_id: str,
    entity_version: int,
    destination: str = "default",
) -> str:
    """The stable key of one entity version at one destination (length-prefixed, unambiguous)."""
    digest = hashlib.sha256(b"qik-v1")
    for part in (tenant_id, connector, connection_id, destination, event_type, entity_id):
        digest.update(_field(part))
    digest.update(entity_version.to_bytes(8, "big", signed=True))
    return f"qik_{digest.hexdigest()[:32]}"


def delivery_id_for(idempotency_key: str, *, replay_id: str | None = None) -> str:
    """A delivery id that is the same whenever the same export is produced again.

    Re-consumption after a crash yields the same delivery id (so duplicates are recognisable);
    a replay gets its own.
    """
    name = idempotency_key if replay_id is None else f"{idempotency_key}/{replay_id}"
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, name))
