"""Inbound: partner webhooks that highlight interest in a company become bookmarks.

The API's intake verifies a partner's request (the connector's
:class:`~connectors.base.inbound.InboundAdapter`), deduplicates it by the partner's event
identity and produces one :class:`~processors.inbound.models.InboundEvent` per interest
highlight to ``integrations.inbound``. The inbound agent resolves each to a Queast company and
produces a bookmark to ``queast.bookmarks``, or parks it in the match-review queue. Nothing
inbound ever produces a Signal.

Modules of the agent's side: :mod:`~processors.inbound.models` (the records),
:mod:`~processors.inbound.directory` (the per-tenant company directory),
:mod:`~processors.inbound.resolution` (which company a highlight names),
:mod:`~processors.inbound.service` (one record in, what to produce and record out),
:mod:`~processors.inbound.reviews` (the review queue and bookmark marks in Redis),
:mod:`~processors.inbound.review_service` and :mod:`~processors.inbound.reviews_api` (deciding
reviews). The agents are in :mod:`processors.agents.inbound`.
"""
