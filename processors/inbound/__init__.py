"""Inbound: partner webhooks that highlight interest in a company become bookmarks.

The API's intake verifies a partner's request (the connector's
:class:`~connectors.base.inbound.InboundAdapter`), deduplicates it by the partner's event
identity and produces one :class:`~processors.inbound.models.InboundEvent` per interest
highlight to ``integrations.inbound``. The inbound agent resolves each to a Queast company and
produces a bookmark to ``queast.bookmarks``, or parks it in the match-review queue. Nothing
inbound ever produces a Signal.
"""
