"""Delivery records: one per attempt outcome, the audit trail of every export.

A record is written to ``integrations.delivery-records`` (the durable copy, keyed by tenant)
and indexed in Redis for the API. Statuses:

- ``delivered``: the destination accepted the record (2xx);
- ``retry_scheduled``: a transient failure; the record went to the retry topic;
- ``deferred``: the connection's lane was full (a slow or limited destination); the record went
  to the retry topic without an attempt being spent;
- ``waiting``: the destination is failing (its breaker is open, see
  :mod:`processors.deliveries.breaker`); the record went to the retry topic without an attempt
  being spent, and waits there until a probe succeeds (or the age budget ends);
- ``dead_lettered``: a permanent failure, or the retry budget is spent; the record went to the
  connector's dead-letter topic with its error history;
- ``duplicate_skipped``: the idempotency key was delivered before; nothing was sent;
- ``stale_skipped``: a newer version of the entity was already sent (delivered, or claimed for
  sending); nothing was sent;
- ``parked``: the connection needs re-authorisation or is disabled (410), or the partner's
  quota for the day is spent; the record waits in the retry topic, no attempt spent, until the
  connection is fixed or re-enabled, or the quota resets;
- ``held_for_review``: the entity matched a partner object ambiguously; nothing was written,
  a review entry waits in the identity store and the record is kept with it
  (:mod:`processors.identity.held`); the review decision sends it again once, as a ``release``
  run whose delivery records carry the release id as ``replay_id``; a record held past its age
  budget is dead-lettered with reason ``review_timeout``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AttemptError", "DeliveryRecord", "DeliveryStatus"]


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    DEFERRED = "deferred"
    WAITING = "waiting"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE_SKIPPED = "duplicate_skipped"
    STALE_SKIPPED = "stale_skipped"
    PARKED = "parked"
    HELD_FOR_REVIEW = "held_for_review"


class AttemptError(BaseModel):
    """One failed attempt, as kept in error histories (no payloads, no response bodies)."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    at: datetime
    error_class: str
    reason: str
    status_code: int | None = None
    retry_after_s: float | None = None


class DeliveryRecord(BaseModel):
    """The outcome of one attempt to deliver one export to one destination."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    event_id: str
    correlation_id: str
    tenant_id: str
    connection_id: str
    connector: str
    destination: str
    event_type: str
    idempotency_key: str
    entity_id: str
    entity_version: int
    attempt: int = Field(ge=0)
    status: DeliveryStatus
    status_code: int | None = None
    last_error: AttemptError | None = None
    replay_id: str | None = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    source: str | None = Field(default=None, description="topic:partition:offset of the export")
