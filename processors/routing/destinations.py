"""Where a connection's exports go: its delivery mode, as export topics.

The connector that carries webhook copies (its registry spec's ``carries_webhook_copies``,
see :func:`connectors.registry.webhook_copy_carrier`) delivers to endpoints tenants name:

- a connection of that connector exports to its own topic, whatever its stored
  ``delivery_mode`` says (the API always stores ``webhook``; older seeds may say ``api``);
- a connection of any other connector exports by its ``delivery_mode``: ``api`` to its own
  connector's topic only, ``webhook`` to the carrier's topic only (the tenant's own signed
  endpoint, the connection's ``webhook`` block), ``both`` to both.

An export delivered by another connector than the connection's own (a connection's webhook
copy) is a *copy*. A copy keeps the connection's ``connection_id``; its idempotency key is
computed with ``destination`` set to the delivering connector (:func:`destination_label`), so
it differs from the own copy's key while the keys of every other export
(``destination="default"``) stay what they were. The router writes the owning connection's
connector in the ``qi.owner_connector`` header so the delivery engine can load the connection
record (see :mod:`processors.deliveries.envelope`).
"""

from __future__ import annotations

from typing import Final

from connectors.registry import webhook_copy_carrier
from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode

__all__ = ["DEFAULT_DESTINATION", "destination_label", "export_destinations"]

DEFAULT_DESTINATION: Final = "default"
"""The idempotency-key destination of an export delivered by the connection's own connector."""


def export_destinations(connection: ConnectionRecord) -> tuple[Connector, ...]:
    """The connectors whose export topics take ``connection``'s exports, own connector first."""
    carrier = Connector(webhook_copy_carrier().name)
    if connection.connector is carrier:
        return (carrier,)
    mode = connection.delivery_mode
    if mode is DeliveryMode.WEBHOOK:
        return (carrier,)
    if mode is DeliveryMode.BOTH:
        return (connection.connector, carrier)
    return (connection.connector,)


def destination_label(connection: ConnectionRecord, destination: Connector) -> str:
    """The ``destination`` part of the idempotency key of ``connection``'s export to
    ``destination``: ``default`` for its own connector, else the delivering connector."""
    return DEFAULT_DESTINATION if destination is connection.connector else destination.value
