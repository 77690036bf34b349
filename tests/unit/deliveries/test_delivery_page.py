"""One read of a page of delivery records for the API and the console: the filters reach the
index as given, a window that ends before it starts and a cursor the index did not issue are
answered before (or instead of) a page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors.deliveries.endpoints import delivery_page
from processors.deliveries.models import DeliveryStatus
from processors.deliveries.records import (
    DeliveryRecordIndex,
    DeliveryRecordPage,
    InvalidCursorError,
)
from processors.errors import BadRequest, ValidationFailed

_T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class _Index(DeliveryRecordIndex):
    """Answers an empty page and keeps what it was asked; ``refuse`` any cursor."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    async def query(self, tenant_id: str, **asked: Any) -> DeliveryRecordPage:
        self.asked.append((tenant_id, asked))
        if self.refuse and asked["cursor"] is not None:
            raise InvalidCursorError
        return DeliveryRecordPage(items=[], next_cursor="next")


async def test_the_filters_reach_the_index_as_given() -> None:
    index = _Index()
    page = await delivery_page(
        index,
        "t_a",
        status=DeliveryStatus.DELIVERED,
        event_id="ev-1",
        since=_T0,
        until=_T0,
        limit=7,
        cursor="c1",
    )
    assert page.next_cursor == "next"
    assert index.asked == [
        (
            "t_a",
            {
                "limit": 7,
                "cursor": "c1",
                "status": DeliveryStatus.DELIVERED,
                "event_id": "ev-1",
                "since": _T0,
                "until": _T0,
            },
        )
    ]


async def test_since_after_until_is_refused_before_the_index_is_read() -> None:
    index = _Index()
    with pytest.raises(ValidationFailed) as caught:
        await delivery_page(
            index, "t_a", since=_T0 + timedelta(seconds=1), until=_T0, limit=50, cursor=None
        )
    assert caught.value.details == [{"loc": ["query", "since"], "msg": "is after until"}]
    assert index.asked == []


async def test_a_cursor_the_index_did_not_issue_is_invalid_cursor() -> None:
    with pytest.raises(BadRequest) as caught:
        await delivery_page(_Index(refuse=True), "t_a", limit=50, cursor="forged")
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_cursor"
