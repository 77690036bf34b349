"""The records of the inbound path, as JSON on their topics (keyed by tenant id).

- :class:`InboundEvent` on ``integrations.inbound``: one verified interest highlight, written
  by the API's intake, read by the inbound agent.
- :class:`Bookmark` on ``queast.bookmarks``: a highlight resolved to a Queast company, with how
  it was matched. ``bookmark_id`` is derived from the ``inbound_id`` (:func:`bookmark_id_for`),
  so every copy of one highlight carries the same id (consumers deduplicate on it).
- :class:`InboundReview` on ``integrations.match-review`` (and in the review queue in Redis): a
  highlight whose company could not be resolved confidently, with its candidates and why.

A bookmark marks interest; it has no field a Signal could be made of, and nothing here
imports the signal contracts.

Every field is bounded; a record that does not validate is the reader's to dead-letter, never
a reason to stop a partition.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.base.inbound import InboundCompany

__all__ = [
    "Bookmark",
    "BookmarkMatch",
    "BookmarkSource",
    "InboundEvent",
    "InboundReview",
    "MatchCandidate",
    "ReviewStatus",
    "bookmark_id_for",
    "review_id_for",
]

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class InboundEvent(BaseModel):
    """One verified interest highlight of a partner, for one tenant's connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inbound_id: str = Field(pattern=r"^in_[0-9a-f]{32}$")
    """Ours: derived from the tenant, connection and partner event id (the same highlight
    received twice has the same id)."""
    kind: Literal["company.interest"] = "company.interest"
    tenant_id: str = Field(pattern=_ID)
    connector: str = Field(pattern=_ID)
    connection_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    partner_event_id: str = Field(min_length=1, max_length=512)
    company: InboundCompany
    note: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime | None = None
    received_at: datetime
    correlation_id: str = Field(min_length=1, max_length=128)


def _derived(prefix: str, inbound_id: str) -> str:
    digest = hashlib.sha256(f"{prefix}:{inbound_id}".encode()).hexdigest()[:32]
    return f"{prefix}_{digest}"


def bookmark_id_for(inbound_id: str) -> str:
    """The bookmark id of a highlight: the same for every delivery of the same ``inbound_id``."""
    return _derived("bm", inbound_id)


def review_id_for(inbound_id: str) -> str:
    """The review id of a highlight: the same for every delivery of the same ``inbound_id``."""
    return _derived("rv", inbound_id)


MatchStrategyName = Literal[
    "partner_id", "queast_id", "domain", "linkedin_url", "company_name", "manual"
]
"""How a bookmark's company was found: the identity store (``partner_id``), the Queast id the
partner sent (``queast_id``), the connection's strategies (``domain``, ``linkedin_url``,
``company_name``), or a tenant admin's review decision (``manual``)."""


class MatchCandidate(BaseModel):
    """One Queast company a highlight could be, with the strategy that found it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0.0, le=1.0)
    strategy: str = Field(min_length=1, max_length=32)


class BookmarkSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connector: str = Field(pattern=_ID)
    connection_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    partner_object_id: str | None = Field(default=None, max_length=128)
    partner_event_id: str = Field(min_length=1, max_length=512)


class BookmarkMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: MatchStrategyName
    confidence: float = Field(ge=0.0, le=1.0)
    candidates: list[MatchCandidate] = Field(default_factory=list, max_length=50)
    decided_by: str | None = Field(default=None, max_length=200)
    """The tenant admin's ``sub`` for a bookmark made by a review decision."""


class Bookmark(BaseModel):
    """A tenant's interest in one Queast company, from one partner highlight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bookmark_id: str = Field(pattern=r"^bm_[0-9a-f]{32}$")
    tenant_id: str = Field(pattern=_ID)
    company_id: str = Field(min_length=1, max_length=128)
    source: BookmarkSource
    match: BookmarkMatch
    occurred_at: datetime | None = None
    correlation_id: str = Field(min_length=1, max_length=128)

    @classmethod
    def of(cls, event: InboundEvent, company_id: str, match: BookmarkMatch) -> Bookmark:
        """The bookmark of ``event`` for ``company_id``."""
        return cls(
            bookmark_id=bookmark_id_for(event.inbound_id),
            tenant_id=event.tenant_id,
            company_id=company_id,
            source=BookmarkSource(
                connector=event.connector,
                connection_id=event.connection_id,
                partner_object_id=event.company.partner_object_id,
                partner_event_id=event.partner_event_id,
            ),
            match=match,
            occurred_at=event.occurred_at or event.received_at,
            correlation_id=event.correlation_id,
        )


class ReviewStatus(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"
    REJECTED = "rejected"


ReviewReason = Literal[
    "ambiguous",
    "below_threshold",
    "no_candidate",
    "partner_read_unavailable",
    "partner_object_not_found",
    "partner_read_failed",
    "partner_auth_failed",
    "partner_needs_reauth",
]
"""Why a highlight waits for a human: two close candidates, a best candidate below the
threshold, nothing in the directory; or a partner object id with no link and no fields to
match, and the partner's company could not be read: the connection has no reader (a connector
without one, or an OAuth connection where no grant store is configured), the partner has no
such object (404), the read kept failing (timeouts, 429, 5xx, a malformed answer), the partner
refused the credentials or their refresh, or the connection is parked as ``needs_reauth``."""


class InboundReview(BaseModel):
    """A highlight waiting for a tenant admin: its candidates, the event and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    review_id: str = Field(pattern=r"^rv_[0-9a-f]{32}$")
    tenant_id: str = Field(pattern=_ID)
    reason: ReviewReason
    explanation: str = Field(max_length=2000)
    candidates: list[MatchCandidate] = Field(default_factory=list, max_length=50)
    event: InboundEvent
    status: ReviewStatus = ReviewStatus.PENDING
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = Field(default=None, max_length=200)
    bookmark: Bookmark | None = None
    """The bookmark the resolution created (set once resolved)."""
