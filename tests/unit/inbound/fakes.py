"""In-memory stand-ins of the inbound service's stores, for unit tests only."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.base.inbound import InboundCompany
from processors.inbound.directory import DirectoryEntry, directory_update
from processors.inbound.models import InboundEvent, InboundReview
from processors.tenants.models import ConnectionRecord, Connector

TENANT = "t_1"
CONNECTION = "conn_h1"


class FakeDirectory:
    """The directory's lookups over a dict, fed with the same domain events."""

    def __init__(self) -> None:
        self.entries_by_id: dict[tuple[str, str], DirectoryEntry] = {}

    def upsert(self, company_id: str, version: int = 1, **data: Any) -> None:
        value = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "company.upserted",
                "schema_version": "1.0",
                "tenant_id": TENANT,
                "occurred_at": "2026-11-26T05:00:00Z",
                "data": {"company_id": company_id, "version": version, **data},
            }
        ).encode()
        update = directory_update(value)
        assert update is not None
        self.entries_by_id[(update.tenant_id, company_id)] = update.entry

    def _live(self, tenant_id: str) -> list[DirectoryEntry]:
        return [e for (t, _), e in self.entries_by_id.items() if t == tenant_id and not e.deleted]

    async def get(self, tenant_id: str, company_id: str) -> DirectoryEntry | None:
        entry = self.entries_by_id.get((tenant_id, company_id))
        return None if entry is None or entry.deleted else entry

    async def entries(self, tenant_id: str, company_ids: Sequence[str]) -> list[DirectoryEntry]:
        found = [await self.get(tenant_id, c) for c in dict.fromkeys(company_ids)]
        return [e for e in found if e is not None]

    async def by_domain(self, tenant_id: str, domain: str) -> list[str]:
        return [e.company_id for e in self._live(tenant_id) if domain in e.domains]

    async def by_linkedin(self, tenant_id: str, linkedin: str) -> list[str]:
        return [e.company_id for e in self._live(tenant_id) if e.linkedin == linkedin]

    async def by_name(self, tenant_id: str, normalized_name: str) -> list[str]:
        words = set(normalized_name.split())
        return [
            e.company_id
            for e in self._live(tenant_id)
            if e.normalized_name and words & set(e.normalized_name.split())
        ]


class FakeLinks:
    def __init__(self, links: dict[str, str] | None = None) -> None:
        self.links = dict(links or {})

    async def by_partner(self, connection_id: str, kind: str, partner_id: str) -> str | None:
        assert kind == "company"
        return self.links.get(f"{connection_id}:{partner_id}")


class FakeConnections:
    def __init__(self, record: ConnectionRecord | None = None) -> None:
        self.record = record

    async def get(self, tenant_id: str, connector: Connector) -> ConnectionRecord | None:
        record = self.record
        if record is None or record.tenant_id != tenant_id or record.connector is not connector:
            return None
        return record


class FakeMarks:
    def __init__(self) -> None:
        self.marked: set[tuple[str, str]] = set()

    async def produced(self, tenant_id: str, bookmark_id: str) -> bool:
        return (tenant_id, bookmark_id) in self.marked

    async def mark(self, tenant_id: str, bookmark_id: str) -> None:
        self.marked.add((tenant_id, bookmark_id))


class FakeReviews:
    def __init__(self) -> None:
        self.reviews: dict[tuple[str, str], InboundReview] = {}

    async def get(self, tenant_id: str, review_id: str) -> InboundReview | None:
        return self.reviews.get((tenant_id, review_id))

    async def add(self, review: InboundReview) -> bool:
        key = (review.tenant_id, review.review_id)
        if key in self.reviews:
            return False
        self.reviews[key] = review
        return True


def inbound_event(
    *,
    connector: str = "webhook",
    tenant_id: str = TENANT,
    inbound_id: str | None = None,
    **company: str,
) -> InboundEvent:
    return InboundEvent(
        inbound_id=inbound_id or f"in_{uuid.uuid4().hex}",
        tenant_id=tenant_id,
        connector=connector,
        connection_id=CONNECTION,
        partner_event_id=f"evt-{uuid.uuid4().hex[:8]}",
        company=InboundCompany(**company),
        received_at=datetime(2026, 12, 4, 10, 0, tzinfo=UTC),
        correlation_id="corr-1",
    )
