"""Response bodies of the delivery-record views.

A page of a tenant's delivery records, newest first, with an opaque ``next_cursor`` to pass back
as ``cursor`` for the next page (``null`` on the last page). Items are the records as indexed
(:class:`~processors.deliveries.models.DeliveryRecord`): ids, coordinates, status, timings and
the last error's class and reason; never payloads or response bodies.
"""

from __future__ import annotations

from pydantic import BaseModel

from processors.deliveries.models import DeliveryRecord

__all__ = ["DeliveryRecordPageOut"]


class DeliveryRecordPageOut(BaseModel):
    """One page of delivery records."""

    items: list[DeliveryRecord]
    next_cursor: str | None
