"""Where a connection's exports go: its delivery mode, as export topics.

- A ``webhook`` connection exports to ``integrations.exports.webhook``, whatever its stored
  ``delivery_mode`` says (the API always stores ``webhook``; older seeds may say ``api``).
- A HubSpot or Pipedrive connection exports by its ``delivery_mode``: ``api`` to its partner
  topic only, ``webhook`` to ``integrations.exports.webhook`` only (the tenant's own signed
  endpoint, the connection's ``webhook`` block), ``both`` to both.

An export delivered by another connector than the connection's own (a partner connection's
webhook copy) is a *copy*. A copy keeps the connection's ``connection_id``; its idempotency
key is computed with ``destination`` set to the delivering connector
(:func:`destination_label`), so it differs from the partner copy's key while the keys of
every other export (``destination="default"``) stay what they were. The router writes the
owning connection's connector in the ``qi.owner_connector`` header so the delivery engine can
load the connection record (see :mod:`processors.deliveries.envelope`).
"""

from __future__ import annotations

from typing import Final

from processors.tenants.models import ConnectionRecord, Connector, DeliveryMode

__all__ = ["DEFAULT_DESTINATION", "destination_label", "export_destinations"]

DEFAULT_DESTINATION: Final = "default"
"""The idempotency-key destination of an export delivered by the connection's own connector."""


def export_destinations(connection: ConnectionRecord) -> tuple[Connector, ...]:
    """The connectors whose export topics take ``connection``'s exports, partner first."""
    if connection.connector is Connector.WEBHOOK:
        return (Connector.WEBHOOK,)
    mode = connection.delivery_mode
    if mode is DeliveryMode.WEBHOOK:
        return (Connector.WEBHOOK,)
    if mode is DeliveryMode.BOTH:
        return (connection.connector, Connector.WEBHOOK)
    return (connection.connector,)


def destination_label(connection: ConnectionRecord, destination: Connector) -> str:
    """The ``destination`` part of the idempotency key of ``connection``'s export to
    ``destination``: ``default`` for its own connector, else the delivering connector."""
    return DEFAULT_DESTINATION if destination is connection.connector else destination.value
