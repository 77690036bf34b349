"""The query parameters of the API's paged listings.

A paged listing answers one page at a time: ``limit`` (1 to 500) caps the items of a page, each
route keeping its own default, and ``cursor`` is the ``next_cursor`` of the page before, opaque
to the caller. Two kinds of cursor are issued: a Kafka offset (:data:`OffsetCursor`, up to
1024 characters: an offset is at most 19 digits, the bound leaves room for a richer cursor
later) and a position in a Redis scan (:data:`ScanCursor`, up to 200 characters). A cursor the
listing did not issue is 400 ``invalid_cursor``; :func:`paged_responses` documents it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from processors.errors import INVALID_CURSOR_DESCRIPTION, error_responses

__all__ = ["OffsetCursor", "PageLimit", "ScanCursor", "paged_responses"]

PageLimit = Annotated[int, Query(ge=1, le=500)]
"""How many items a page holds at most."""

OffsetCursor = Annotated[str | None, Query(min_length=1, max_length=1024)]
"""The cursor of a listing read from a Kafka topic."""

ScanCursor = Annotated[str | None, Query(min_length=1, max_length=200)]
"""The cursor of a listing read with Redis scans."""


def paged_responses() -> dict[int | str, dict[str, Any]]:
    """The error answers a paged listing adds to its router's (the 400 ``invalid_cursor``)."""
    return error_responses(descriptions={400: INVALID_CURSOR_DESCRIPTION})
